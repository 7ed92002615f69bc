{{/* Name of every hook object but the namespace. */}}
{{- define "kubesweep-hook.name" -}}
{{- printf "%s-kubesweep" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every hook object. */}}
{{- define "kubesweep-hook.labels" -}}
app.kubernetes.io/name: kubesweep-hook
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/*
Hook annotations. Weights order the objects (Helm runs the hooks of one
event one by one, by weight then name): namespace, then ServiceAccount and
ClusterRole, then the binding, then the Job. Every object carries all three
delete policies: a failed Job is deleted by hook-failed and the objects
before it by hook-succeeded, a successful run deletes all of them, and a
leftover of an interrupted uninstall is replaced (before-hook-creation).
*/}}
{{- define "kubesweep-hook.annotations" -}}
helm.sh/hook: post-delete
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded,hook-failed
{{- end -}}
