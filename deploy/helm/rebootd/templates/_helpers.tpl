{{/*
rebootd chart helpers. Rule: every object carries the same labels as the kustomize base
(app.kubernetes.io/name, part-of, managed-by) so `helm template` and `kubectl kustomize
deploy/kustomize/base` render the same objects (tests/integration/test_helm_chart.py).
*/}}

{{- define "rebootd.name" -}}
{{- .Values.fullnameOverride | default "rebootd" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rebootd.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/name: rebootd
app.kubernetes.io/part-of: rebootd
{{- end -}}

{{- define "rebootd.selectorLabels" -}}
app.kubernetes.io/name: rebootd
{{- end -}}

{{- define "rebootd.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "rebootd.name" .) -}}
{{- end -}}

{{- define "rebootd.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The reboot method: configuration.rebootMethod (command or signal). */}}
{{- define "rebootd.rebootMethod" -}}
{{- .Values.configuration.rebootMethod | default "command" -}}
{{- end -}}

{{/* The host folder holding the sentinel file, mounted read-only at /host/<folder>. */}}
{{- define "rebootd.sentinel" -}}
{{- .Values.configuration.rebootSentinel | default "/var/run/reboot-required" -}}
{{- end -}}

{{- define "rebootd.sentinelDir" -}}
{{- dir (include "rebootd.sentinel" .) -}}
{{- end -}}

{{/*
configuration.* -> REBOOTD_*: camelCase key to upper snake case (rebootDays -> REBOOTD_REBOOT_DAYS).
Unset (null, "" or []) keys are left out: the daemon's default applies. Lists are joined with
commas, except blockingPodSelector (";", a comma inside a selector means AND) and notifyUrl
(spaces). rebootSentinel is the path on the host; the daemon reads it under /host.
*/}}
{{- define "rebootd.configData" -}}
REBOOTD_REBOOT_SENTINEL: {{ printf "/host%s" (include "rebootd.sentinel" .) | quote }}
{{- range $key, $value := .Values.configuration }}
{{- if not (or (eq $key "rebootSentinel") (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) (and (kindIs "slice" $value) (eq (len $value) 0))) }}
{{- $env := printf "REBOOTD_%s" ($key | snakecase | upper) }}
{{- if kindIs "slice" $value }}
{{- $sep := "," }}
{{- if eq $key "blockingPodSelector" }}{{ $sep = ";" }}{{ end }}
{{- if eq $key "notifyUrl" }}{{ $sep = " " }}{{ end }}
{{ $env }}: {{ join $sep $value | quote }}
{{- else if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
{{ $env }}: {{ int64 $value | toString | quote }}
{{- else }}
{{ $env }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
