"""Imports every area's tables so that ``Base.metadata`` is complete (Alembic, tests)."""

from patron.campaigns import models as campaigns_models
from patron.coalition import models as coalition_models
from patron.db import Base
from patron.idempotency import models as idempotency_models
from patron.identity import models as identity_models
from patron.jobs import models as jobs_models
from patron.ledger import models as ledger_models
from patron.members import models as members_models
from patron.notify import models as notify_models
from patron.offline import models as offline_models
from patron.operations import models as operations_models
from patron.pos import models as pos_models
from patron.programs import models as programs_models
from patron.referrals import models as referrals_models
from patron.scores import models as scores_models
from patron.security import models as security_models
from patron.tenancy import models as tenancy_models
from patron.vouchers import models as vouchers_models
from patron.vouchers.benefits import models as benefits_models

metadata = Base.metadata

__all__ = ["identity_models", "ledger_models", "members_models", "metadata", "notify_models",
           "pos_models", "programs_models", "scores_models", "tenancy_models"]
__all__ += ["coalition_models", "operations_models", "vouchers_models"]
__all__ += ["offline_models"]
__all__ += ["benefits_models"]
__all__ += ["security_models"]
__all__ += ["campaigns_models"]
__all__ += ["referrals_models"]
__all__ += ["idempotency_models"]
__all__ += ["jobs_models"]
