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

// Values that break naive syncs: integers past 2^53 and at both ends of Int64,
// decimals of 15 digits and with trailing zeros (CAP's SQLite keeps decimals as
// doubles: 15 digits are what it holds exactly), unicode, empty strings, nulls,
// timestamps with milliseconds and before 1970. ieee754compatible (package.json)
// makes CAP send Int64 and Decimal values as strings, as OData v4 allows.
entity LedgerEntries : managed {
  key entryNo : Int64;
      amount  : Decimal(34, 4);
      rate    : Double;
      units   : Int64;
      memo    : String(200);
      bookedAt: Timestamp;
}
