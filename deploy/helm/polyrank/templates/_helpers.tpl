{{/* Names and labels shared by every object of a release. */}}
{{- define "polyrank.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "polyrank.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "polyrank.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The model repository as the server sees it: an object-storage URL or a mounted folder. */}}
{{- define "polyrank.repositoryLocation" -}}
{{- if eq .Values.repository.source "url" -}}
{{- required "repository.url is required when repository.source is url" .Values.repository.url -}}
{{- else -}}
{{- printf "/models/%s" .Values.repository.path -}}
{{- end -}}
{{- end -}}

{{- define "polyrank.checkValues" -}}
{{- if not (has .Values.target (list "embedded" "triton-gpu")) -}}
{{- fail (printf "target must be embedded or triton-gpu, got %q" .Values.target) -}}
{{- end -}}
{{- if not (has .Values.repository.source (list "url" "volume" "export")) -}}
{{- fail (printf "repository.source must be url, volume or export, got %q" .Values.repository.source) -}}
{{- end -}}
{{- if and (eq .Values.repository.source "url") (eq .Values.target "embedded") -}}
{{- fail "repository.source url needs target triton-gpu: the embedded server checks its files in a local folder (use volume or export)" -}}
{{- end -}}
{{- if and (eq .Values.repository.source "volume") (not .Values.repository.claimName) -}}
{{- fail "repository.claimName is required when repository.source is volume" -}}
{{- end -}}
{{- if and (eq .Values.repository.source "export") (not .Values.repository.export.checkpointClaim) -}}
{{- fail "repository.export.checkpointClaim is required when repository.source is export" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.secretName is required when tls.enabled is true" -}}
{{- end -}}
{{- if and .Values.modelControl.enabled (not .Values.modelControl.adminKeySecret) -}}
{{- fail "modelControl.adminKeySecret is required when modelControl.enabled is true" -}}
{{- end -}}
{{- end -}}
