"""The deliveries' errors (problem+json codes)."""

from __future__ import annotations

from patron.errors import InvalidInput, NotFound, PatronError


# Not found is `not_found` for every object: another tenant's id and one that does not
# exist get the same answer (docs/tenancy.md).
class WebhookEndpointNotFound(NotFound):
    title = "No such webhook endpoint"


class DeliveryNotFound(NotFound):
    title = "No such delivery"


class TargetNotAllowed(InvalidInput):
    code = "webhook_target_not_allowed"
    title = "This webhook address may not be used"


class UnknownEventType(InvalidInput):
    code = "unknown_event_type"
    title = "Unknown event type"


class NothingToReplay(PatronError):
    status = 409
    code = "delivery_not_replayable"
    title = "This delivery cannot be sent again"


class PushNotConfigured(PatronError):
    status = 404
    code = "push_not_configured"
    title = "This deployment sends no web push"


class PushSubscriptionNotFound(NotFound):
    title = "No such push subscription"


class InvalidSubscription(InvalidInput):
    code = "invalid_push_subscription"
    title = "This push subscription cannot be used"
