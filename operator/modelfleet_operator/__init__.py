"""ModelFleet's Kubernetes operator: InferenceService resources in, Deployments, Services and
autoscalers out."""
