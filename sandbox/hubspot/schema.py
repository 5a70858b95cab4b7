"""Object types and their property definitions (the sandbox's HubSpot schema).

Every object type has 40-80 properties: HubSpot's own (hubspotDefined) and custom ones, covering every property
type (string, number, bool, enumeration single and multi-select, date, datetime, phone_number). `gen` names the
value generator in data.py; `empty` is the share of records where the property is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUPS = {
    "contactinformation": "Contact information",
    "companyinformation": "Company information",
    "dealinformation": "Deal information",
    "ticketinformation": "Ticket information",
    "analyticsinformation": "Web analytics history",
    "sales_properties": "Sales properties",
    "custom_properties": "Custom properties",
}


@dataclass(frozen=True)
class Prop:
    name: str
    label: str
    type: str
    field_type: str
    group: str
    gen: str = ""
    options: tuple[tuple[str, str], ...] = ()
    hubspot_defined: bool = True
    empty: float = 0.15
    calculated: bool = False
    has_unique: bool = False
    description: str = ""
    display_order: int = -1


@dataclass(frozen=True)
class ObjectType:
    name: str
    type_id: str
    singular: str
    object_label: str  # as in HubSpot error messages: "Could not get some CONTACT objects"
    scopes: tuple[str, ...]  # any one of them grants read access
    modified_prop: str
    group: str
    default_props: tuple[str, ...]
    props: tuple[Prop, ...] = field(default=())


def _opts(*values: str) -> tuple[tuple[str, str], ...]:
    return tuple((v.replace("_", " ").title() if v.isupper() or "_" in v else v.title(), v) for v in values)


def _p(name, label, type_, field_type, group, gen="", options=(), custom=False, empty=0.15, **kw) -> Prop:
    return Prop(name, label, type_, field_type, group, gen or name, options, not custom, empty, **kw)


LIFECYCLE = _opts(
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
LEAD_STATUS = _opts(
    "NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"
)
SOURCES = _opts(
    "ORGANIC_SEARCH",
    "PAID_SEARCH",
    "EMAIL_MARKETING",
    "SOCIAL_MEDIA",
    "REFERRALS",
    "OTHER_CAMPAIGNS",
    "DIRECT_TRAFFIC",
    "OFFLINE",
    "PAID_SOCIAL",
)
LANGS = (
    ("English", "en"),
    ("Deutsch", "de"),
    ("Français", "fr"),
    ("Español", "es"),
    ("日本語", "ja"),
    ("Português", "pt-br"),
    ("Polski", "pl"),
)
COLORS = (("Red", "red"), ("Green", "green"), ("Blue", "blue"), ("Schwarz / Black", "black"), ("Türkis", "turquoise"))
INTERESTS = (
    ("Analytics", "analytics"),
    ("Automation", "automation"),
    ("CRM", "crm"),
    ("E-mail", "email"),
    ("Événements", "events"),
    ("Reporting", "reporting"),
)
TIERS = (("Bronze", "bronze"), ("Silver", "silver"), ("Gold", "gold"), ("Platinum", "platinum"))
HEALTH = (("Healthy", "healthy"), ("At risk", "at_risk"), ("Churned", "churned"))
CONTACT_TIME = (("Morning", "morning"), ("Afternoon", "afternoon"), ("Evening", "evening"))
TOPICS = (
    ("Product news", "product_news"),
    ("Webinars", "webinars"),
    ("Case studies", "case_studies"),
    ("Offers", "offers"),
)
INDUSTRIES = _opts(
    "ACCOUNTING",
    "COMPUTER_SOFTWARE",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "RETAIL",
    "MARKETING_AND_ADVERTISING",
    "EDUCATION_MANAGEMENT",
    "AUTOMOTIVE",
)
COMPANY_TYPES = _opts("PROSPECT", "PARTNER", "RESELLER", "VENDOR", "OTHER")
EMPLOYEES = _opts("1-5", "5-25", "25-50", "50-100", "100-500", "500-1000", "1000+")
DEAL_STAGES = (
    ("Appointment scheduled", "appointmentscheduled"),
    ("Qualified to buy", "qualifiedtobuy"),
    ("Presentation scheduled", "presentationscheduled"),
    ("Decision maker bought-in", "decisionmakerboughtin"),
    ("Contract sent", "contractsent"),
    ("Closed won", "closedwon"),
    ("Closed lost", "closedlost"),
)
DEAL_TYPES = (("New business", "newbusiness"), ("Existing business", "existingbusiness"))
PRIORITIES = _opts("LOW", "MEDIUM", "HIGH", "URGENT")
TICKET_STAGES = (("New", "1"), ("Waiting on contact", "2"), ("Waiting on us", "3"), ("Closed", "4"))
TICKET_CATEGORIES = _opts("PRODUCT_ISSUE", "BILLING_ISSUE", "FEATURE_REQUEST", "GENERAL_INQUIRY")
TICKET_SOURCES = _opts("EMAIL", "CHAT", "PHONE", "FORM")
REGIONS = (("EMEA", "emea"), ("North America", "na"), ("LATAM", "latam"), ("APAC", "apac"))
SEGMENTS = (("SMB", "smb"), ("Mid-market", "mid_market"), ("Enterprise", "enterprise"))
PRODUCTS = (
    ("Starter", "starter"),
    ("Professional", "professional"),
    ("Enterprise", "enterprise"),
    ("Add-on: Ops", "addon_ops"),
)

C = "contactinformation"
CO = "companyinformation"
D = "dealinformation"
T = "ticketinformation"
A = "analyticsinformation"
X = "custom_properties"

_CONTACT_PROPS = (
    _p("email", "Email", "string", "text", C, empty=0.04, has_unique=True),
    _p("firstname", "First Name", "string", "text", C, empty=0.03),
    _p("lastname", "Last Name", "string", "text", C, empty=0.03),
    _p("salutation", "Salutation", "string", "text", C, empty=0.6),
    _p("phone", "Phone Number", "phone_number", "phonenumber", C, gen="phone"),
    _p("mobilephone", "Mobile Phone Number", "phone_number", "phonenumber", C, gen="phone", empty=0.4),
    _p("fax", "Fax Number", "phone_number", "phonenumber", C, gen="phone", empty=0.9),
    _p("company", "Company Name", "string", "text", C, gen="company_name"),
    _p("jobtitle", "Job Title", "string", "text", C),
    _p("website", "Website URL", "string", "text", C),
    _p("address", "Street Address", "string", "text", C),
    _p("city", "City", "string", "text", C),
    _p("state", "State/Region", "string", "text", C),
    _p("zip", "Postal Code", "string", "text", C),
    _p("country", "Country/Region", "string", "text", C),
    _p("industry", "Industry", "string", "text", C, gen="industry_text", empty=0.5),
    _p("message", "Message", "string", "textarea", C, gen="long_text", empty=0.7),
    _p("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", C, gen="option", options=LIFECYCLE, empty=0.02),
    _p("hs_lead_status", "Lead Status", "enumeration", "select", "sales_properties", gen="option", options=LEAD_STATUS),
    _p("hubspot_owner_id", "Contact owner", "enumeration", "select", "sales_properties", gen="owner", empty=0.2),
    _p("hs_language", "Preferred language", "enumeration", "select", C, gen="option", options=LANGS, empty=0.5),
    _p(
        "hs_email_optout",
        "Unsubscribed from all email",
        "bool",
        "booleancheckbox",
        C,
        gen="bool",
        empty=0.3,
        options=(("True", "true"), ("False", "false")),
    ),
    _p("hs_analytics_source", "Original Source", "enumeration", "select", A, gen="option", options=SOURCES),
    _p("hs_analytics_num_visits", "Number of Pageviews", "number", "number", A, gen="count", empty=0.1),
    _p("hs_analytics_first_timestamp", "Time First Seen", "datetime", "date", A, gen="datetime"),
    _p("hs_email_domain", "Email Domain", "string", "text", C, gen="email_domain", calculated=True, empty=0.04),
    _p("num_notes", "Number of Sales Activities", "number", "number", "sales_properties", gen="count", empty=0.3),
    _p("notes_last_updated", "Last Activity Date", "datetime", "date", "sales_properties", gen="datetime"),
    _p(
        "num_associated_deals",
        "Number of Associated Deals",
        "number",
        "number",
        "sales_properties",
        gen="small",
        calculated=True,
    ),
    _p("recent_deal_amount", "Recent Deal Amount", "number", "number", "sales_properties", gen="money", empty=0.6),
    _p("total_revenue", "Total Revenue", "number", "number", "sales_properties", gen="money", empty=0.6),
    _p(
        "first_deal_created_date",
        "First Deal Created Date",
        "datetime",
        "date",
        "sales_properties",
        gen="datetime",
        empty=0.6,
    ),
    _p("associatedcompanyid", "Primary Associated Company ID", "number", "number", C, gen="ref_id", empty=0.3),
    _p(
        "hs_marketable_status",
        "Marketing contact status",
        "bool",
        "booleancheckbox",
        C,
        gen="bool",
        empty=0.0,
        options=(("True", "true"), ("False", "false")),
    ),
    _p(
        "hs_timezone",
        "Time Zone",
        "enumeration",
        "select",
        C,
        gen="option",
        empty=0.4,
        options=(
            ("Europe/Berlin", "europe_slash_berlin"),
            ("America/New_York", "america_slash_new_york"),
            ("Asia/Tokyo", "asia_slash_tokyo"),
            ("America/Sao_Paulo", "america_slash_sao_paulo"),
        ),
    ),
    _p("twitterhandle", "Twitter Username", "string", "text", "socialmediainformation", gen="handle", empty=0.7),
    _p(
        "hs_persona",
        "Persona",
        "enumeration",
        "radio",
        C,
        gen="option",
        empty=0.5,
        options=(("Marketing Mary", "persona_1"), ("Sales Sam", "persona_2"), ("Ops Olga", "persona_3")),
    ),
    _p("date_of_birth", "Date of birth", "date", "date", C, gen="birth_date", empty=0.6),
    _p(
        "gender",
        "Gender",
        "enumeration",
        "select",
        C,
        gen="option",
        empty=0.7,
        options=(("Female", "female"), ("Male", "male"), ("Non-binary", "non_binary")),
    ),
    _p("closedate", "Close Date", "datetime", "date", "sales_properties", gen="datetime", empty=0.7),
    # custom
    _p(
        "favorite_color",
        "Lieblingsfarbe / Favorite color",
        "enumeration",
        "select",
        X,
        gen="option",
        options=COLORS,
        custom=True,
    ),
    _p("interests", "Interests", "enumeration", "checkbox", X, gen="multi", options=INTERESTS, custom=True),
    _p(
        "vip_customer",
        "VIP customer",
        "bool",
        "booleancheckbox",
        X,
        gen="bool",
        custom=True,
        options=(("Yes", "true"), ("No", "false")),
    ),
    _p("loyalty_points", "Loyalty points", "number", "number", X, gen="count", custom=True),
    _p("signup_date", "Signup date", "date", "date", X, gen="date", custom=True),
    _p("last_login_at", "Last login", "datetime", "date", X, gen="datetime", custom=True),
    _p("support_notes", "Support notes (long)", "string", "textarea", X, gen="long_text", custom=True, empty=0.5),
    _p("preferred_name", "Preferred name", "string", "text", X, gen="firstname", custom=True, empty=0.4),
    _p("nps_score", "NPS score", "number", "number", X, gen="nps", custom=True, empty=0.3),
    _p("customer_tier", "Customer tier", "enumeration", "radio", X, gen="option", options=TIERS, custom=True),
    _p("account_health", "Account health", "enumeration", "select", X, gen="option", options=HEALTH, custom=True),
    _p("referral_code", "Referral code", "string", "text", X, gen="code", custom=True, empty=0.5),
    _p("external_crm_id", "External CRM ID", "string", "text", X, gen="code", custom=True, has_unique=True),
    _p(
        "newsletter_topics", "Newsletter topics", "enumeration", "checkbox", X, gen="multi", options=TOPICS, custom=True
    ),
    _p(
        "onboarding_completed",
        "Onboarding completed",
        "bool",
        "booleancheckbox",
        X,
        gen="bool",
        custom=True,
        options=(("Yes", "true"), ("No", "false")),
    ),
    _p("contract_end_date", "Contract end date", "date", "date", X, gen="date", custom=True, empty=0.5),
    _p("lifetime_value_eur", "Lifetime value (€)", "number", "number", X, gen="money", custom=True),
    _p("secondary_email", "Secondary email", "string", "text", X, gen="secondary_email", custom=True, empty=0.7),
    _p(
        "preferred_contact_time",
        "Preferred contact time",
        "enumeration",
        "select",
        X,
        gen="option",
        options=CONTACT_TIME,
        custom=True,
    ),
    _p("region", "Sales region", "enumeration", "select", X, gen="option", options=REGIONS, custom=True),
    _p("consent_text", "Consent text", "string", "textarea", X, gen="sentence", custom=True, empty=0.4),
    _p("legacy_field", "Legacy field (always empty)", "string", "text", X, gen="empty", custom=True, empty=1.0),
)

_COMPANY_PROPS = (
    _p("name", "Company name", "string", "text", CO, gen="company_name", empty=0.01),
    _p("domain", "Company Domain Name", "string", "text", CO, gen="company_domain", empty=0.05),
    _p("website", "Website URL", "string", "text", CO, gen="website"),
    _p("phone", "Phone Number", "phone_number", "phonenumber", CO, gen="phone"),
    _p("address", "Street Address", "string", "text", CO),
    _p("address2", "Street Address 2", "string", "text", CO, gen="address2", empty=0.7),
    _p("city", "City", "string", "text", CO),
    _p("state", "State/Region", "string", "text", CO),
    _p("zip", "Postal Code", "string", "text", CO),
    _p("country", "Country/Region", "string", "text", CO),
    _p("industry", "Industry", "enumeration", "select", CO, gen="option", options=INDUSTRIES),
    _p("type", "Type", "enumeration", "select", CO, gen="option", options=COMPANY_TYPES),
    _p("description", "Description", "string", "textarea", CO, gen="long_text", empty=0.4),
    _p("numberofemployees", "Number of Employees", "number", "number", CO, gen="count"),
    _p("annualrevenue", "Annual Revenue", "number", "number", CO, gen="money"),
    _p("founded_year", "Year Founded", "string", "text", CO, gen="year"),
    _p(
        "is_public",
        "Is Public",
        "bool",
        "booleancheckbox",
        CO,
        gen="bool",
        options=(("True", "true"), ("False", "false")),
    ),
    _p("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", CO, gen="option", options=LIFECYCLE),
    _p("hs_lead_status", "Lead Status", "enumeration", "select", "sales_properties", gen="option", options=LEAD_STATUS),
    _p("hubspot_owner_id", "Company owner", "enumeration", "select", "sales_properties", gen="owner"),
    _p("timezone", "Time Zone", "string", "text", CO, gen="tz_text"),
    _p("linkedin_company_page", "LinkedIn Company Page", "string", "text", "socialmediainformation", gen="linkedin"),
    _p("twitterhandle", "Twitter Handle", "string", "text", "socialmediainformation", gen="handle", empty=0.6),
    _p(
        "num_associated_contacts", "Number of Associated Contacts", "number", "number", CO, gen="small", calculated=True
    ),
    _p("num_associated_deals", "Number of Associated Deals", "number", "number", CO, gen="small", calculated=True),
    _p("hs_num_open_deals", "Number of open deals", "number", "number", CO, gen="small", calculated=True),
    _p("total_revenue", "Total Revenue", "number", "number", CO, gen="money", empty=0.5),
    _p("recent_deal_close_date", "Recent Deal Close Date", "datetime", "date", CO, gen="datetime", empty=0.5),
    _p("notes_last_updated", "Last Activity Date", "datetime", "date", "sales_properties", gen="datetime"),
    _p("first_contact_createdate", "First Contact Create Date", "datetime", "date", CO, gen="datetime"),
    _p("hs_analytics_source", "Original Source Type", "enumeration", "select", A, gen="option", options=SOURCES),
    _p("hs_analytics_num_visits", "Number of Pageviews", "number", "number", A, gen="count"),
    _p("closedate", "Close Date", "datetime", "date", CO, gen="datetime", empty=0.6),
    _p(
        "web_technologies",
        "Web Technologies",
        "enumeration",
        "checkbox",
        CO,
        gen="multi",
        empty=0.5,
        options=(
            ("Google Analytics", "google_analytics"),
            ("HubSpot", "hubspot"),
            ("Shopify", "shopify"),
            ("WordPress", "wordpress"),
            ("Stripe", "stripe"),
        ),
    ),
    # custom
    _p("customer_tier", "Customer tier", "enumeration", "radio", X, gen="option", options=TIERS, custom=True),
    _p("segment", "Segment", "enumeration", "select", X, gen="option", options=SEGMENTS, custom=True),
    _p("region", "Sales region", "enumeration", "select", X, gen="option", options=REGIONS, custom=True),
    _p("products_owned", "Products owned", "enumeration", "checkbox", X, gen="multi", options=PRODUCTS, custom=True),
    _p("contract_start_date", "Contract start", "date", "date", X, gen="date", custom=True),
    _p("contract_end_date", "Contract end", "date", "date", X, gen="date", custom=True, empty=0.4),
    _p("arr_eur", "ARR (€)", "number", "number", X, gen="money", custom=True),
    _p("health_score", "Health score", "number", "number", X, gen="nps", custom=True),
    _p(
        "is_strategic",
        "Strategic account",
        "bool",
        "booleancheckbox",
        X,
        gen="bool",
        custom=True,
        options=(("Yes", "true"), ("No", "false")),
    ),
    _p("erp_id", "ERP ID", "string", "text", X, gen="code", custom=True, has_unique=True),
    _p("billing_contact_phone", "Billing phone", "phone_number", "phonenumber", X, gen="phone", custom=True),
    _p("account_notes", "Account notes", "string", "textarea", X, gen="long_text", custom=True, empty=0.5),
    _p("last_qbr_at", "Last QBR", "datetime", "date", X, gen="datetime", custom=True, empty=0.5),
    _p("local_name", "Local name", "string", "text", X, gen="company_name", custom=True, empty=0.5),
)

_DEAL_PROPS = (
    _p("dealname", "Deal Name", "string", "text", D, gen="deal_name", empty=0.0),
    _p("amount", "Amount", "number", "number", D, gen="money", empty=0.1),
    _p("dealstage", "Deal Stage", "enumeration", "radio", D, gen="option", options=DEAL_STAGES, empty=0.0),
    _p(
        "pipeline",
        "Pipeline",
        "enumeration",
        "select",
        D,
        gen="pipeline",
        empty=0.0,
        options=(("Sales Pipeline", "default"), ("Renewals", "renewals")),
    ),
    _p("closedate", "Close Date", "datetime", "date", D, gen="datetime", empty=0.1),
    _p("dealtype", "Deal Type", "enumeration", "radio", D, gen="option", options=DEAL_TYPES),
    _p("description", "Deal Description", "string", "textarea", D, gen="long_text", empty=0.5),
    _p("hubspot_owner_id", "Deal owner", "enumeration", "select", D, gen="owner"),
    _p("hs_priority", "Priority", "enumeration", "select", D, gen="option", options=PRIORITIES[:3]),
    _p("hs_deal_stage_probability", "Deal probability", "number", "number", D, gen="probability", calculated=True),
    _p("hs_forecast_amount", "Forecast amount", "number", "number", D, gen="money", calculated=True),
    _p(
        "hs_is_closed",
        "Is Deal Closed?",
        "bool",
        "booleancheckbox",
        D,
        gen="bool",
        calculated=True,
        empty=0.0,
        options=(("True", "true"), ("False", "false")),
    ),
    _p(
        "hs_is_closed_won",
        "Is Closed Won",
        "bool",
        "booleancheckbox",
        D,
        gen="bool",
        calculated=True,
        empty=0.0,
        options=(("True", "true"), ("False", "false")),
    ),
    _p("num_associated_contacts", "Number of Contacts", "number", "number", D, gen="small", calculated=True),
    _p("num_notes", "Number of Sales Activities", "number", "number", D, gen="count"),
    _p("notes_last_updated", "Last Activity Date", "datetime", "date", D, gen="datetime"),
    _p("hs_next_step", "Next step", "string", "text", D, gen="sentence", empty=0.5),
    _p("hs_analytics_source", "Original Source Type", "enumeration", "select", A, gen="option", options=SOURCES),
    _p("hs_acv", "Annual contract value", "number", "number", D, gen="money", calculated=True),
    _p("hs_arr", "Annual recurring revenue", "number", "number", D, gen="money", calculated=True),
    _p("hs_mrr", "Monthly recurring revenue", "number", "number", D, gen="money", calculated=True),
    _p("hs_tcv", "Total contract value", "number", "number", D, gen="money", calculated=True),
    _p("days_to_close", "Days to close", "number", "number", D, gen="small", calculated=True),
    _p("closed_lost_reason", "Closed Lost Reason", "string", "textarea", D, gen="sentence", empty=0.8),
    _p("closed_won_reason", "Closed Won Reason", "string", "textarea", D, gen="sentence", empty=0.8),
    _p(
        "deal_currency_code",
        "Currency",
        "enumeration",
        "select",
        D,
        gen="option",
        options=(("US Dollar", "USD"), ("Euro", "EUR"), ("Yen", "JPY")),
    ),
    _p("hs_closed_amount", "Closed amount", "number", "number", D, gen="money", calculated=True),
    _p("hs_date_entered_closedwon", "Date entered Closed Won", "datetime", "date", D, gen="datetime", empty=0.6),
    # custom
    _p("products", "Products", "enumeration", "checkbox", X, gen="multi", options=PRODUCTS, custom=True),
    _p("region", "Sales region", "enumeration", "select", X, gen="option", options=REGIONS, custom=True),
    _p("discount_pct", "Discount %", "number", "number", X, gen="probability", custom=True),
    _p("competitor", "Competitor", "string", "text", X, gen="company_name", custom=True, empty=0.5),
    _p("po_number", "PO number", "string", "text", X, gen="code", custom=True, empty=0.5),
    _p("signed_date", "Signed date", "date", "date", X, gen="date", custom=True, empty=0.5),
    _p(
        "renewal",
        "Is renewal",
        "bool",
        "booleancheckbox",
        X,
        gen="bool",
        custom=True,
        options=(("Yes", "true"), ("No", "false")),
    ),
    _p("legal_notes", "Legal notes", "string", "textarea", X, gen="long_text", custom=True, empty=0.6),
    _p("champion_phone", "Champion phone", "phone_number", "phonenumber", X, gen="phone", custom=True),
    _p(
        "forecast_category",
        "Forecast category",
        "enumeration",
        "select",
        X,
        gen="option",
        custom=True,
        options=(("Pipeline", "pipeline"), ("Best case", "best_case"), ("Commit", "commit")),
    ),
    _p("last_contacted_at", "Last contacted", "datetime", "date", X, gen="datetime", custom=True),
    _p("seats", "Seats", "number", "number", X, gen="count", custom=True),
)

_TICKET_PROPS = (
    _p("subject", "Ticket name", "string", "text", T, gen="ticket_subject", empty=0.0),
    _p("content", "Ticket description", "string", "textarea", T, gen="long_text", empty=0.1),
    _p(
        "hs_pipeline",
        "Pipeline",
        "enumeration",
        "select",
        T,
        gen="pipeline",
        empty=0.0,
        options=(("Support Pipeline", "0"), ("Escalations", "1")),
    ),
    _p(
        "hs_pipeline_stage", "Ticket status", "enumeration", "select", T, gen="option", options=TICKET_STAGES, empty=0.0
    ),
    _p("hs_ticket_priority", "Priority", "enumeration", "select", T, gen="option", options=PRIORITIES),
    _p("hs_ticket_category", "Category", "enumeration", "checkbox", T, gen="multi", options=TICKET_CATEGORIES),
    _p("source_type", "Source", "enumeration", "select", T, gen="option", options=TICKET_SOURCES),
    _p("hubspot_owner_id", "Ticket owner", "enumeration", "select", T, gen="owner"),
    _p("closed_date", "Close date", "datetime", "date", T, gen="datetime", empty=0.5),
    _p("time_to_close", "Time to close", "number", "number", T, gen="count", calculated=True, empty=0.5),
    _p("time_to_first_agent_reply", "Time to first agent reply", "number", "number", T, gen="count", calculated=True),
    _p("first_agent_reply_date", "First agent reply date", "datetime", "date", T, gen="datetime"),
    _p("last_reply_date", "Last reply date", "datetime", "date", T, gen="datetime"),
    _p("num_notes", "Number of Sales Activities", "number", "number", T, gen="count"),
    _p("notes_last_updated", "Last activity date", "datetime", "date", T, gen="datetime"),
    _p(
        "hs_resolution",
        "Resolution",
        "enumeration",
        "select",
        T,
        gen="option",
        empty=0.5,
        options=(("Issue fixed", "ISSUE_FIXED"), ("Answered", "ANSWERED"), ("No reply", "NO_REPLY")),
    ),
    _p("hs_num_times_contacted", "Number of times contacted", "number", "number", T, gen="small"),
    _p(
        "hs_is_closed",
        "Is closed",
        "bool",
        "booleancheckbox",
        T,
        gen="bool",
        calculated=True,
        empty=0.0,
        options=(("True", "true"), ("False", "false")),
    ),
    _p("nps_follow_up_answer", "Feedback", "string", "textarea", T, gen="sentence", empty=0.7),
    _p("hs_ticket_language", "Language", "enumeration", "select", T, gen="option", options=LANGS),
    _p(
        "hs_tag_ids",
        "Tags",
        "enumeration",
        "checkbox",
        T,
        gen="multi",
        empty=0.6,
        options=(("Billing", "billing"), ("Bug", "bug"), ("VIP", "vip"), ("Onboarding", "onboarding")),
    ),
    _p(
        "hs_all_team_ids",
        "All teams",
        "enumeration",
        "checkbox",
        T,
        gen="multi",
        empty=0.6,
        options=(("Support EU", "101"), ("Support US", "102"), ("Tier 2", "103")),
    ),
    _p(
        "hs_first_agent_message_sent_at",
        "First agent email response date",
        "datetime",
        "date",
        T,
        gen="datetime",
        empty=0.4,
    ),
    _p("hs_object_source", "Record source", "string", "text", T, gen="object_source", empty=0.0),
    _p("hs_ticket_id", "Ticket ID", "number", "number", T, gen="ref_id", calculated=True, empty=0.0),
    _p("hs_date_entered_4", "Date entered Closed", "datetime", "date", T, gen="datetime", empty=0.5),
    _p(
        "hs_customer_agent_responded",
        "Agent responded",
        "bool",
        "booleancheckbox",
        T,
        gen="bool",
        options=(("True", "true"), ("False", "false")),
    ),
    _p("hs_thread_ids_to_restore", "Threads", "string", "text", T, gen="empty", empty=1.0),
    # custom
    _p(
        "product_area",
        "Product area",
        "enumeration",
        "select",
        X,
        gen="option",
        custom=True,
        options=(("Sync", "sync"), ("Mapping", "mapping"), ("Billing", "billing"), ("Login", "login")),
    ),
    _p("severity", "Severity", "number", "number", X, gen="severity", custom=True),
    _p(
        "sla_breached",
        "SLA breached",
        "bool",
        "booleancheckbox",
        X,
        gen="bool",
        custom=True,
        options=(("Yes", "true"), ("No", "false")),
    ),
    _p("reported_version", "Reported version", "string", "text", X, gen="version", custom=True),
    _p("customer_phone", "Customer phone", "phone_number", "phonenumber", X, gen="phone", custom=True),
    _p("due_date", "Due date", "date", "date", X, gen="date", custom=True, empty=0.4),
    _p("escalated_at", "Escalated at", "datetime", "date", X, gen="datetime", custom=True, empty=0.7),
    _p(
        "affected_modules", "Affected modules", "enumeration", "checkbox", X, gen="multi", options=PRODUCTS, custom=True
    ),
    _p("internal_notes", "Internal notes", "string", "textarea", X, gen="long_text", custom=True, empty=0.5),
    _p("customer_name_local", "Customer (local spelling)", "string", "text", X, gen="firstname", custom=True),
    _p("region", "Region", "enumeration", "select", X, gen="option", options=REGIONS, custom=True),
)


def _common(modified: str) -> tuple[Prop, ...]:
    """The properties every object has; their values are computed per record (ids and timestamps)."""
    return (
        Prop("hs_object_id", "Record ID", "number", "number", "_system", "id", (), True, 0.0, has_unique=True),
        Prop("createdate", "Create Date", "datetime", "date", "_system", "createdate", (), True, 0.0),
        Prop(modified, "Last Modified Date", "datetime", "date", "_system", "modified", (), True, 0.0),
    )


def _with_common(props: tuple[Prop, ...], group: str, modified: str) -> tuple[Prop, ...]:
    common = tuple(
        Prop(p.name, p.label, p.type, p.field_type, group, p.gen, p.options, True, 0.0, has_unique=p.has_unique)
        for p in _common(modified)
    )
    return common + props


OBJECT_TYPES: dict[str, ObjectType] = {
    "contacts": ObjectType(
        "contacts",
        "0-1",
        "contact",
        "CONTACT",
        ("crm.objects.contacts.read",),
        "lastmodifieddate",
        C,
        ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
        _with_common(_CONTACT_PROPS, C, "lastmodifieddate"),
    ),
    "companies": ObjectType(
        "companies",
        "0-2",
        "company",
        "COMPANY",
        ("crm.objects.companies.read",),
        "hs_lastmodifieddate",
        CO,
        ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
        _with_common(_COMPANY_PROPS, CO, "hs_lastmodifieddate"),
    ),
    "deals": ObjectType(
        "deals",
        "0-3",
        "deal",
        "DEAL",
        ("crm.objects.deals.read",),
        "hs_lastmodifieddate",
        D,
        (
            "amount",
            "closedate",
            "createdate",
            "dealname",
            "dealstage",
            "hs_lastmodifieddate",
            "hs_object_id",
            "pipeline",
        ),
        _with_common(_DEAL_PROPS, D, "hs_lastmodifieddate"),
    ),
    "tickets": ObjectType(
        "tickets",
        "0-5",
        "ticket",
        "TICKET",
        ("tickets",),
        "hs_lastmodifieddate",
        T,
        (
            "content",
            "createdate",
            "hs_lastmodifieddate",
            "hs_object_id",
            "hs_pipeline",
            "hs_pipeline_stage",
            "hs_ticket_category",
            "hs_ticket_priority",
            "subject",
        ),
        _with_common(_TICKET_PROPS, T, "hs_lastmodifieddate"),
    ),
}

ALIASES: dict[str, str] = {}
for _t in OBJECT_TYPES.values():
    for _alias in (_t.name, _t.singular, _t.type_id):
        ALIASES[_alias] = _t.name

# Scopes the sandbox knows (the authorize page refuses others, as HubSpot does for scopes an app lacks).
KNOWN_SCOPES = (
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "tickets",
    "crm.objects.owners.read",
    "crm.schemas.contacts.read",
    "crm.schemas.companies.read",
    "crm.schemas.deals.read",
    "crm.objects.line_items.read",
    "crm.objects.products.read",
    "crm.objects.quotes.read",
    "e-commerce",
    "crm.lists.read",
    "content",
    "forms",
)


def resolve_type(name: str) -> ObjectType | None:
    key = ALIASES.get(name) or ALIASES.get(name.lower())
    return OBJECT_TYPES.get(key) if key else None
