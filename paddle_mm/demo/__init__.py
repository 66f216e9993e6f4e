"""Built-in synthetic worlds (generators): the inspection parts (:mod:`.inspection`)."""
