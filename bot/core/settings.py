"""Doorstep settings, read from the environment (and `.env`) with pydantic-settings.

One nested model per integration. Every setting is optional for the embedded
default; in production mode (`DOORSTEP_ENV=production`) missing or default
secrets are refused at start.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TwilioSettings(BaseModel):
    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    sms_from: str = ""
    whatsapp_from: str = ""
    api_base_url: str = ""  # empty = Twilio's own hosts; tests point it at a loopback fake
    sms_rate_per_second: float = 1.0
    whatsapp_rate_per_second: float = 20.0
    whatsapp_templates: dict[str, str] = {}  # message kind -> approved Content SID (HX…)
    whatsapp_sms_fallback: bool = True
    status_callback_url: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.account_sid and self.auth_token.get_secret_value())


class TelegramSettings(BaseModel):
    bot_token: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    api_base_url: str = ""  # empty = https://api.telegram.org
    bot_username: str = ""
    agent_chat_id: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.bot_token.get_secret_value())


class EmailSettings(BaseModel):
    """SMTP out, signed links and the inbound webhooks of the email channel (integrations/email_channel.py)."""

    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    from_address: str = ""  # `Shop <orders@shop.example>`
    reply_domain: str = ""  # replies go to reply+<token>@this domain (its MX posts to /webhooks/email/inbound)
    link_secret: SecretStr = SecretStr("")  # signs unsubscribe links and reply tokens
    webhook_secret: SecretStr = SecretStr("")  # whsec_…: Standard Webhooks signature of the inbound webhooks
    records: bool = True  # order confirmation, shipping update and receipt by email next to the chat message

    @property
    def configured(self) -> bool:
        return bool(self.smtp_host and self.from_address and self.link_secret.get_secret_value())


class ViberSettings(BaseModel):
    auth_token: SecretStr = SecretStr("")
    bot_name: str = ""
    bot_avatar: str = ""
    chat_uri: str = ""  # the bot's URI, for viber://pa?chatURI=…&context=<link token> deep links
    api_base_url: str = ""  # empty = https://chatapi.viber.com; tests point it at a loopback fake

    @property
    def configured(self) -> bool:
        return bool(self.auth_token.get_secret_value() and self.bot_name)


class LLMSettings(BaseModel):
    api_key: SecretStr = SecretStr("")
    base_url: str = ""
    model: str = "gpt-4o-mini"
    timeout_seconds: float = 3.0

    @property
    def configured(self) -> bool:
        return bool(self.api_key.get_secret_value())


class LogisticsSettings(BaseModel):
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    allow_private_addresses: bool = False


class Settings(BaseSettings):
    """All environment settings. Names are contracts (DESIGN.md): never rename."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    env: Literal["development", "production", "test"] = Field("development", alias="DOORSTEP_ENV")
    database_url: str = Field("sqlite:///doorstep.db", alias="DATABASE_URL")
    api_key: SecretStr = Field(SecretStr(""), alias="DOORSTEP_API_KEY")
    public_url: str = Field("http://127.0.0.1:8000", alias="DOORSTEP_PUBLIC_URL")
    timezone: str = Field("UTC", alias="DOORSTEP_TIMEZONE")
    config_path: str = Field("doorstep.yaml", alias="DOORSTEP_CONFIG")
    log_level: str = Field("INFO", alias="DOORSTEP_LOG_LEVEL")
    # "text": one line per record for people; "json": one JSON object per line for log pipelines.
    log_format: Literal["text", "json"] = Field("text", alias="DOORSTEP_LOG_FORMAT")
    access_log: bool = Field(False, alias="DOORSTEP_ACCESS_LOG")  # one line per request, paths without queries
    # HTTP hardening (issue 11): bodies over the limit are refused before they are read; a client gets this
    # long to send a request's headers and body, so slow senders cannot hold connections open.
    max_body_bytes: int = Field(1024 * 1024, alias="DOORSTEP_MAX_BODY_BYTES", gt=0)
    request_timeout_seconds: float = Field(30.0, alias="DOORSTEP_REQUEST_TIMEOUT_SECONDS", gt=0)
    keep_alive_seconds: int = Field(5, alias="DOORSTEP_KEEP_ALIVE_SECONDS", ge=1)
    # Operator URLs (webhooks, Chatwoot, LLM) may point at loopback and private networks (development, tests,
    # on-premises services); metadata and link-local addresses stay refused (bot/core/urlguard.py).
    allow_private_urls: bool = Field(False, alias="DOORSTEP_ALLOW_PRIVATE_URLS")
    # Empty = each customer's language's wording ("our support team", "nuestra tienda", ...).
    support_contact: str = Field("", alias="DOORSTEP_SUPPORT_CONTACT")
    shop_name: str = Field("", alias="DOORSTEP_SHOP_NAME")
    default_country: str = Field("IN", alias="DOORSTEP_DEFAULT_COUNTRY")
    agent_webhook_url: str = Field("", alias="DOORSTEP_AGENT_WEBHOOK_URL")  # new-escalation notifications
    # None = doorstep.yaml's contact_policy.quiet_hours (default 21:00-08:00); "" turns quiet hours off.
    quiet_hours: str | None = Field(None, alias="DOORSTEP_QUIET_HOURS")
    # Dispatchers on PostgreSQL LISTEN for new outbox rows (bot/delivery/wakeup.py); false behind PgBouncer in
    # transaction mode, where LISTEN hears nothing: they poll then.
    listen_notify: bool = Field(True, alias="DOORSTEP_LISTEN_NOTIFY")

    twilio_account_sid: str = Field("", alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: SecretStr = Field(SecretStr(""), alias="TWILIO_AUTH_TOKEN")
    twilio_sms_from: str = Field("", alias="TWILIO_SMS_FROM")
    twilio_whatsapp_from: str = Field("", alias="TWILIO_WHATSAPP_FROM")
    twilio_api_base_url: str = Field("", alias="TWILIO_API_BASE_URL")
    # channels (issue 3): per-sender send rates, WhatsApp templates outside the 24 h window.
    twilio_sms_rate: float = Field(1.0, alias="TWILIO_SMS_RATE_PER_SECOND", gt=0)
    twilio_whatsapp_rate: float = Field(20.0, alias="TWILIO_WHATSAPP_RATE_PER_SECOND", gt=0)
    twilio_whatsapp_templates: str = Field("", alias="TWILIO_WHATSAPP_TEMPLATES")  # kind=HX…,kind=HX… or JSON
    twilio_whatsapp_sms_fallback: bool = Field(True, alias="TWILIO_WHATSAPP_SMS_FALLBACK")
    twilio_status_callbacks: bool = Field(True, alias="TWILIO_STATUS_CALLBACKS")

    telegram_bot_token: SecretStr = Field(SecretStr(""), alias="TELEGRAM_BOT_TOKEN")
    telegram_webhook_secret: SecretStr = Field(SecretStr(""), alias="TELEGRAM_WEBHOOK_SECRET")
    telegram_api_base_url: str = Field("", alias="TELEGRAM_API_BASE_URL")
    telegram_bot_username: str = Field("", alias="TELEGRAM_BOT_USERNAME")
    telegram_agent_chat_id: str = Field("", alias="TELEGRAM_AGENT_CHAT_ID")

    # channels (issue 18): email records and replies, Viber.
    email_smtp_host: str = Field("", alias="EMAIL_SMTP_HOST")
    email_smtp_port: int = Field(587, alias="EMAIL_SMTP_PORT", gt=0, lt=65536)
    email_smtp_username: str = Field("", alias="EMAIL_SMTP_USERNAME")
    email_smtp_password: SecretStr = Field(SecretStr(""), alias="EMAIL_SMTP_PASSWORD")
    email_smtp_security: Literal["starttls", "tls", "none"] = Field("starttls", alias="EMAIL_SMTP_SECURITY")
    email_from: str = Field("", alias="EMAIL_FROM")
    email_reply_domain: str = Field("", alias="EMAIL_REPLY_DOMAIN")
    email_link_secret: SecretStr = Field(SecretStr(""), alias="EMAIL_LINK_SECRET")
    email_webhook_secret: SecretStr = Field(SecretStr(""), alias="EMAIL_WEBHOOK_SECRET")
    email_records: bool = Field(True, alias="EMAIL_RECORDS")
    viber_auth_token: SecretStr = Field(SecretStr(""), alias="VIBER_AUTH_TOKEN")
    viber_bot_name: str = Field("", alias="VIBER_BOT_NAME")
    viber_bot_avatar: str = Field("", alias="VIBER_BOT_AVATAR")
    viber_chat_uri: str = Field("", alias="VIBER_CHAT_URI")
    viber_api_base_url: str = Field("", alias="VIBER_API_BASE_URL")

    openai_api_key: SecretStr = Field(SecretStr(""), alias="OPENAI_API_KEY")
    openai_base_url: str = Field("", alias="OPENAI_BASE_URL")
    llm_model: str = Field("gpt-4o-mini", alias="DOORSTEP_LLM_MODEL")

    logistics_webhook_url: str = Field("", alias="LOGISTICS_WEBHOOK_URL")
    logistics_webhook_secret: SecretStr = Field(SecretStr(""), alias="LOGISTICS_WEBHOOK_SECRET")
    logistics_allow_private: bool = Field(False, alias="LOGISTICS_ALLOW_PRIVATE_ADDRESSES")
    # integrations (issue 8): carrier status in, Chatwoot hand-off.
    carrier_webhook_secret: SecretStr = Field(SecretStr(""), alias="CARRIER_WEBHOOK_SECRET")
    aftership_webhook_secret: SecretStr = Field(SecretStr(""), alias="AFTERSHIP_WEBHOOK_SECRET")
    chatwoot_url: str = Field("", alias="CHATWOOT_URL")
    chatwoot_api_token: SecretStr = Field(SecretStr(""), alias="CHATWOOT_API_TOKEN")
    chatwoot_account_id: int = Field(1, alias="CHATWOOT_ACCOUNT_ID")
    chatwoot_inbox_id: int | None = Field(None, alias="CHATWOOT_INBOX_ID")
    chatwoot_webhook_token: SecretStr = Field(SecretStr(""), alias="CHATWOOT_WEBHOOK_TOKEN")

    @property
    def twilio(self) -> TwilioSettings:
        return TwilioSettings(
            account_sid=self.twilio_account_sid,
            auth_token=self.twilio_auth_token,
            sms_from=self.twilio_sms_from,
            whatsapp_from=self.twilio_whatsapp_from,
            api_base_url=self.twilio_api_base_url,
            sms_rate_per_second=self.twilio_sms_rate,
            whatsapp_rate_per_second=self.twilio_whatsapp_rate,
            whatsapp_templates=_parse_mapping(self.twilio_whatsapp_templates),
            whatsapp_sms_fallback=self.twilio_whatsapp_sms_fallback,
            status_callback_url=(self.public_url.rstrip("/") + "/webhooks/twilio/status"
                                 if self.twilio_status_callbacks else ""),
        )

    @property
    def telegram(self) -> TelegramSettings:
        return TelegramSettings(
            bot_token=self.telegram_bot_token,
            webhook_secret=self.telegram_webhook_secret,
            api_base_url=self.telegram_api_base_url,
            bot_username=self.telegram_bot_username,
            agent_chat_id=self.telegram_agent_chat_id,
        )

    @property
    def email(self) -> EmailSettings:
        return EmailSettings(
            smtp_host=self.email_smtp_host, smtp_port=self.email_smtp_port, smtp_username=self.email_smtp_username,
            smtp_password=self.email_smtp_password, smtp_security=self.email_smtp_security,
            from_address=self.email_from, reply_domain=self.email_reply_domain,
            link_secret=self.email_link_secret, webhook_secret=self.email_webhook_secret, records=self.email_records,
        )

    @property
    def viber(self) -> ViberSettings:
        return ViberSettings(auth_token=self.viber_auth_token, bot_name=self.viber_bot_name,
                             bot_avatar=self.viber_bot_avatar, chat_uri=self.viber_chat_uri,
                             api_base_url=self.viber_api_base_url)

    @property
    def llm(self) -> LLMSettings:
        return LLMSettings(api_key=self.openai_api_key, base_url=self.openai_base_url, model=self.llm_model)

    @property
    def logistics(self) -> LogisticsSettings:
        return LogisticsSettings(
            webhook_url=self.logistics_webhook_url,
            webhook_secret=self.logistics_webhook_secret,
            allow_private_addresses=self.logistics_allow_private,
        )

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        key = self.api_key.get_secret_value()
        if len(key) < 24 or key in {"changeme", "secret", "test"}:
            problems.append("DOORSTEP_API_KEY must be set to a random value of at least 24 characters")
        if self.database_url.startswith("sqlite") is False and "password@" in self.database_url:
            problems.append("DATABASE_URL uses a default password")
        if self.twilio_account_sid and not self.public_url.startswith("https://"):
            problems.append("DOORSTEP_PUBLIC_URL must be https:// when Twilio is configured")
        if self.telegram_bot_token.get_secret_value() and not self.telegram_webhook_secret.get_secret_value():
            problems.append("TELEGRAM_WEBHOOK_SECRET is required when TELEGRAM_BOT_TOKEN is set")
        if self.logistics_webhook_url and not self.logistics_webhook_secret.get_secret_value():
            problems.append("LOGISTICS_WEBHOOK_SECRET is required when LOGISTICS_WEBHOOK_URL is set")
        if self.email_smtp_host and len(self.email_link_secret.get_secret_value()) < 24:
            problems.append("EMAIL_LINK_SECRET must be a random value of at least 24 characters when EMAIL_SMTP_HOST is set")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self


def _parse_mapping(raw: str) -> dict[str, str]:
    """`kind=HX…,kind2=HX…` or a JSON object -> dict; blank -> {}."""
    raw = raw.strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        import json

        return {str(k): str(v) for k, v in json.loads(raw).items()}
    pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs if k.strip() and v.strip()}


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
