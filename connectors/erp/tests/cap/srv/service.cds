using { tapyard.erp as db } from '../db/schema';

@requires: 'authenticated-user'
service ErpService @(path: '/odata/v4/erp') {
  entity Customers   as projection on db.Customers;
  entity SalesOrders as projection on db.SalesOrders;
  entity Items       as projection on db.Items;
  entity LedgerEntries as projection on db.LedgerEntries;
}
