"""signupflow: a signup flows from auth to member to batch over Apache Kafka, with Faust."""

__version__ = "0.1.0"
