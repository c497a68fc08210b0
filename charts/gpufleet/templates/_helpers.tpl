{{/* Names and labels shared by the templates. */}}

{{/* Every object's name, cluster-scoped ones included, so two releases never collide:
release "gpufleet" gives "gpufleet-operator", the names of deploy/. */}}
{{- define "gpufleet.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gpufleet.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "gpufleet.fullname" .) }}
{{- end }}

{{- define "gpufleet.selectorLabels" -}}
app.kubernetes.io/name: gpufleet-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gpufleet.labels" -}}
{{ include "gpufleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The image by digest when one is given, else by tag (default: appVersion). */}}
{{- define "gpufleet.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}
