{{/*
The operator's RBAC rules, shared by the ClusterRole (cluster-wide) and the per-namespace
Roles (templates/rbac.yaml).
*/}}

{{- define "modelfleet.rbac.workRules" -}}
# The children of every InferenceService.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
# Predictor pods, read-only: their start and Ready times give each InferenceService's
# last cold start, and the scheduler's reason for a pod it cannot place goes into its status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The InferenceServices themselves, their status and (kopf's) finalizers.
- apiGroups: ["serving.modelfleet.dev"]
  resources: ["inferenceservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["serving.modelfleet.dev"]
  resources: ["inferenceservices/status"]
  verbs: ["patch"]
- apiGroups: ["serving.modelfleet.dev"]
  resources: ["inferenceservices/finalizers"]
  verbs: ["update"]
# Events that tell users what happened to their InferenceService.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The TLS Secret an InferenceService names (spec.modelfleet.tls): get only, never list or
# watch, and asked for as a Table (type and number of keys), so no Secret value ever reaches
# the operator. Its status then says whether the Secret exists.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- define "modelfleet.rbac.discoveryRules" -}}
# kopf's discovery: which namespaces and custom resources exist (read-only).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}
