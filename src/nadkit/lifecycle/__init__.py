"""A model's life after training: analyst feedback and retraining (:mod:`~nadkit.lifecycle.feedback`)
and the model registry with its versions and promotions (:mod:`~nadkit.lifecycle.registry`)."""
