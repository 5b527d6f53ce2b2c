namespace tapyard.erp;

using { managed } from '@sap/cds/common';

entity Customers : managed {
  key ID          : Integer;
      name        : String(100);
      city        : String(60);
      country     : String(2);
      creditLimit : Decimal(15, 2);
      blocked     : Boolean;
      since       : Date;
}

entity SalesOrders : managed {
  key orderNo   : String(10);
      customer  : Association to Customers;
      amount    : Decimal(15, 2);
      currency  : String(3);
      status    : String(20);
      orderDate : Date;
      weightKg  : Double;
}

// No modified-date field: read in full every run.
entity Items {
  key sku         : String(20);
      description : String(100);
      unitPrice   : Decimal(10, 2);
      stock       : Integer;
}
