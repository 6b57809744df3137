from __future__ import annotations

from patron.errors import Conflict, InvalidInput, NotFound


class BadColumns(InvalidInput):
    code = "import_columns"
    title = "The file's header row does not have the columns this import takes"


class BadRow(InvalidInput):
    code = "import_row_invalid"
    title = "A value of the row is not valid for its column"


class MemberUnknown(NotFound):
    code = "import_member_unknown"
    title = "No member of this merchant has the row's external_ref: import the members first"


class MemberNotImportable(Conflict):
    code = "import_member_not_active"
    title = "The member named by external_ref is withdrawn or erased"


class StoreUnknown(NotFound):
    code = "import_store_unknown"
    title = "The merchant has no store with this store_code"


class StoreRequired(InvalidInput):
    code = "import_store_required"
    title = "The merchant has several stores: each purchase row needs its store_code"


class ReceiptMixed(InvalidInput):
    code = "import_receipt_mixed"
    title = "The rows of one receipt disagree on its member, time or currency"


class ReceiptSplit(InvalidInput):
    code = "import_receipt_split"
    title = "The rows of one receipt must follow each other in the file"


class ReceiptConflict(Conflict):
    code = "import_receipt_conflict"
    title = "This receipt was imported before with other lines, time or member"


class AmountPrecision(InvalidInput):
    code = "import_amount_precision"
    title = "The amount has more decimals than the currency has"


class PurchaseInFuture(InvalidInput):
    code = "import_purchase_in_future"
    title = "occurred_at is after the server's time"
