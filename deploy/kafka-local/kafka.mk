# Local single-node Kafka 4.x (KRaft, no Docker) on 127.0.0.1:$(KAFKA_PORT, default 9092).
# Use: include deploy/kafka-local/kafka.mk. Env vars honoured: see deploy/kafka-local/env.sh.
KAFKA_LOCAL_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

.PHONY: kafka-fetch kafka-up kafka-down kafka-smoke

kafka-fetch: ## fetch the broker jars with Maven into the cache (no-op when cached)
	$(KAFKA_LOCAL_DIR)/fetch.sh

kafka-up: ## start the broker in the background and wait until it answers (KAFKA_FRESH=1 wipes data)
	$(KAFKA_LOCAL_DIR)/start.sh

kafka-down: ## stop the broker
	$(KAFKA_LOCAL_DIR)/stop.sh

kafka-smoke: kafka-up ## topic, produce/consume and transaction check against the broker
	bash -c '. $(KAFKA_LOCAL_DIR)/env.sh && exec "$$KAFKA_PYTHON" $(KAFKA_LOCAL_DIR)/smoke.py'
