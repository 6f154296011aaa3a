"""The audit trail: an AuditEvent for every request and a Provenance for every write.

https://hl7.org/fhir/R4/security.html#audit
"""
