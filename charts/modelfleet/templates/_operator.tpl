{{/*
The operator container's command line and environment.
*/}}

{{/* `modelfleet operator` arguments (the image's ENTRYPOINT is `modelfleet`). */}}
{{- define "modelfleet.operatorArgs" -}}
- operator
- --liveness=http://0.0.0.0:{{ .Values.health.port }}/healthz
{{- if .Values.watch.clusterWide }}
- --all-namespaces
{{- else }}
{{- range (include "modelfleet.watchNamespaces" . | fromJsonArray) }}
- --namespace={{ . }}
{{- end }}
{{- end }}
{{- if include "modelfleet.ha" . }}
- --peering={{ include "modelfleet.peeringName" . }}
{{- /* The digit 1 then the pod index: 10, 11, ..., 19, 110: distinct for distinct pods, and
never kopf's default priority 0. Without --peering the operator runs standalone. */}}
- --priority=1$(POD_INDEX)
{{- end }}
{{- with .Values.operator.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Environment: the runtime defaults every InferenceService gets (the operator's settings,
MODELFLEET_OPERATOR_*), then the pod's identity for kopf, then extraEnv.
*/}}
{{- define "modelfleet.operatorEnv" -}}
- name: MODELFLEET_OPERATOR_RUNTIME_IMAGE
  value: {{ include "modelfleet.image" (dict "image" .Values.runtime.image "context" .) | quote }}
- name: MODELFLEET_OPERATOR_IMAGE_PULL_POLICY
  value: {{ .Values.runtime.image.pullPolicy | quote }}
- name: MODELFLEET_OPERATOR_DEFAULT_RESOURCES
  value: {{ .Values.runtime.resources | toJson | quote }}
- name: MODELFLEET_OPERATOR_RUNTIME_DEFAULTS
  value: {{ .Values.runtime.defaults | toJson | quote }}
- name: MODELFLEET_OPERATOR_ALLOWED_STORAGE_HOSTS
  value: {{ .Values.runtime.allowedStorageHosts | toJson | quote }}
- name: MODELFLEET_OPERATOR_CLUSTER_DOMAIN
  value: {{ .Values.operator.clusterDomain | quote }}
- name: MODELFLEET_OPERATOR_LOG_LEVEL
  value: {{ .Values.operator.logLevel | upper | quote }}
- name: MODELFLEET_OPERATOR_LOG_FORMAT
  value: {{ .Values.operator.logFormat | quote }}
{{- range $key, $value := .Values.operator.config }}
- name: MODELFLEET_OPERATOR_{{ upper $key }}
  value: {{ if kindIs "string" $value }}{{ $value | quote }}{{ else }}{{ $value | toJson | quote }}{{ end }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if include "modelfleet.ha" . }}
- name: POD_INDEX
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
{{- end }}
{{- with .Values.operator.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
