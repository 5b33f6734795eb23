"""Kafka access on aiokafka: topics, producer, consumer, codecs, dead letters, local broker."""
