"""The tenant API of messages, contact lists, campaigns, opt-outs, the
quota and status webhooks (routes in campaigns.api_urls).

One module per resource holds that resource's serializers (the JSON shapes
and the validation of what clients send) and its views:
:mod:`~campaigns.api.messages` (single and batch), :mod:`~campaigns.api.quota`,
:mod:`~campaigns.api.contact_lists` (with their contacts and CSV uploads),
:mod:`~campaigns.api.campaigns` (with the lifecycle actions),
:mod:`~campaigns.api.reports`, :mod:`~campaigns.api.opt_outs` and
:mod:`~campaigns.api.webhooks`. What they share is in
:mod:`~campaigns.api.base` (the base view, documented errors, path
parameters) and :mod:`~campaigns.api.fields` (serializer fields).

Views only translate HTTP to calls into the app's modules. They build on the
instances API's ``TenantView`` (API-key authentication, tenant scoping,
pagination, JSON errors): every query starts from the key's tenant, so
another tenant's object is a 404 exactly like a missing one. As in the
instances API (api.serializers): every error is field-level with a message
for a person; keys a client may not write, or that do not exist, are refused
by name; public ids are UUIDs.
"""
