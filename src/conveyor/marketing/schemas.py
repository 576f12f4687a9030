"""Request bodies of the Marketing API subset, as the spec declares them.

Unknown keys are ignored (the real service does the same); known keys are type-checked
strictly, as the real service's JSON-schema validation does: `"yes"` is not a boolean and `"5"`
is not a number.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MemberStatus = Literal["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]
PatchStatus = Literal["subscribed", "unsubscribed", "cleaned", "pending"]
MergeType = Literal[
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
]


# A tag name as the `tags` table holds it.
TagName = Annotated[str, Field(min_length=1, max_length=100)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class Contact(Body):
    company: str = Field(max_length=500)
    address1: str = Field(max_length=500)
    address2: str = Field(default="", max_length=500)
    city: str = Field(max_length=500)
    # Optional in the spec's POST /lists (company, address1, city and country are required).
    state: str = Field(default="", max_length=500)
    zip: str = Field(default="", max_length=500)
    country: str = Field(max_length=500)
    phone: str = Field(default="", max_length=500)


class CampaignDefaults(Body):
    from_name: str = Field(max_length=500)
    from_email: str = Field(max_length=320)
    subject: str = Field(max_length=500)
    language: str = Field(max_length=50)


class ListCreate(Body):
    name: str = Field(min_length=1, max_length=100)
    contact: Contact
    permission_reminder: str = Field(max_length=1000)
    use_archive_bar: bool = False
    campaign_defaults: CampaignDefaults
    notify_on_subscribe: str = Field(default="", max_length=500)
    notify_on_unsubscribe: str = Field(default="", max_length=500)
    email_type_option: bool
    double_optin: bool = False
    marketing_permissions: bool = False


class ListPatch(Body):
    """Every field optional, each with the limits of `ListCreate` (the columns hold no more)."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    contact: Contact | None = None
    permission_reminder: str | None = Field(default=None, max_length=1000)
    use_archive_bar: bool | None = None
    campaign_defaults: CampaignDefaults | None = None
    notify_on_subscribe: str | None = Field(default=None, max_length=500)
    notify_on_unsubscribe: str | None = Field(default=None, max_length=500)
    email_type_option: bool | None = None
    double_optin: bool | None = None
    marketing_permissions: bool | None = None


class Location(Body):
    latitude: float = 0
    longitude: float = 0


class MarketingPermissionInput(Body):
    marketing_permission_id: str = Field(max_length=100)
    enabled: bool


class MemberFields(Body):
    """Fields shared by POST, PUT and PATCH of a member."""

    email_type: Literal["html", "text"] | None = None
    merge_fields: dict[str, Any] | None = None
    interests: dict[str, bool] | None = None
    language: str | None = Field(default=None, max_length=10)
    vip: bool | None = None
    location: Location | None = None
    marketing_permissions: list[MarketingPermissionInput] | None = None
    ip_signup: str | None = Field(default=None, max_length=45)
    timestamp_signup: str | None = Field(default=None, max_length=40)
    ip_opt: str | None = Field(default=None, max_length=45)
    timestamp_opt: str | None = Field(default=None, max_length=40)


class MemberCreate(MemberFields):
    email_address: str = Field(max_length=1000)
    status: MemberStatus
    tags: list[TagName] | None = Field(default=None, max_length=500)


class MemberUpsert(MemberFields):
    email_address: str | None = Field(default=None, max_length=1000)
    status: MemberStatus | None = None
    status_if_new: MemberStatus | None = None


class MemberPatch(MemberFields):
    email_address: str | None = Field(default=None, max_length=1000)
    status: PatchStatus | None = None


class NullableLocation(Body):
    latitude: float | None = None
    longitude: float | None = None


class BatchMember(MemberFields):
    """A member of batch subscribe: the spec lets every one of its values be null, which
    means not given (an address that is null is no address)."""

    email_address: str | None = Field(default=None, max_length=1000)
    status: MemberStatus | None = None
    status_if_new: MemberStatus | None = None
    tags: list[TagName] | None = Field(default=None, max_length=500)
    interests: dict[str, bool | None] | None = None  # type: ignore[assignment]
    location: NullableLocation | None = None  # type: ignore[assignment]

    @field_validator("interests")
    @classmethod
    def _given_interests(cls, value: dict[str, bool | None] | None) -> dict[str, bool] | None:
        if value is None:
            return None
        return {key: flag for key, flag in value.items() if flag is not None}


class BatchSubscribe(Body):
    members: list[dict[str, Any]] = Field(max_length=500)
    update_existing: bool | None = False
    sync_tags: bool | None = False


class TagChange(Body):
    name: TagName
    status: Literal["active", "inactive"]


class TagsPost(Body):
    tags: list[TagChange] = Field(max_length=500)
    is_syncing: bool = False


class MergeOptions(Body):
    default_country: int | None = None
    phone_format: str | None = Field(default=None, max_length=50)
    date_format: str | None = Field(default=None, max_length=50)
    choices: list[str] | None = Field(default=None, max_length=200)
    size: int | None = None


class MergeFieldCreate(Body):
    tag: str | None = Field(default=None, min_length=1, max_length=10)
    name: str = Field(min_length=1, max_length=100)
    type: MergeType
    required: bool = False
    default_value: str = Field(default="", max_length=500)
    public: bool = True
    display_order: int | None = None
    options: MergeOptions | None = None
    help_text: str = Field(default="", max_length=500)


class MergeFieldPatch(Body):
    tag: str | None = Field(default=None, min_length=1, max_length=10)
    # Required by the spec's PATCH body, as on the real service.
    name: str = Field(min_length=1, max_length=100)
    required: bool | None = None
    default_value: str | None = Field(default=None, max_length=500)
    public: bool | None = None
    display_order: int | None = None
    options: MergeOptions | None = None
    help_text: str | None = Field(default=None, max_length=500)
