"""OAuth2 that fetches its own tokens (issue 13): a profile's provider settings (``settings``), the
client credentials it keeps in the keyring (``client_credentials``), the providers' token requests
(``providers``) and the token cache every thread of a process shares (``tokens``)."""
