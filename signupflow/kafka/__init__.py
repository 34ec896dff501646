"""Files for the local Apache Kafka broker: the Maven pom that fetches it and its log config."""
