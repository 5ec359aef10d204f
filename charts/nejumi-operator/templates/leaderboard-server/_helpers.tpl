{{/*
The read-only leaderboard server (`leaderboard.server`): its name, labels and rules, and the
leaderboard store's settings as a pod's environment (`leaderboard.store`), for any pod that reads
the store with the operator's store identity.
*/}}

{{/*
The server's name: every object of it (ServiceAccount, roles, bindings, Deployment, Service).
*/}}
{{- define "nejumi-operator.leaderboardServer.name" -}}
{{- include "nejumi-operator.suffixed" (list . "leaderboard-server") }}
{{- end }}

{{/*
Selector labels: the operator's, with its own component (never matched by the operator's
Deployment, whose selector says `component: operator`).
*/}}
{{- define "nejumi-operator.leaderboardServer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nejumi-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: leaderboard-server
{{- end }}

{{- define "nejumi-operator.leaderboardServer.labels" -}}
helm.sh/chart: {{ include "nejumi-operator.chart" . }}
{{ include "nejumi-operator.leaderboardServer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nejumi
{{- end }}

{{/*
The server's rules, in a ClusterRole (every namespace) or a Role per watched namespace.
*/}}
{{- define "nejumi-operator.leaderboardServer.rules" -}}
# The index lists NejumiLeaderboards (their status: leader, counts, page URIs), and each page
# request reads one (get). Read on request with a 2 s cache: no watch, and no write of any kind.
- apiGroups: ["nejumi.wandb.ai"]
  resources: ["nejumileaderboards"]
  verbs: ["get", "list"]
{{- end }}

{{/*
Where the store's CA bundle is mounted (a ConfigMap key, read-only), as AWS_CA_BUNDLE names it.
*/}}
{{- define "nejumi-operator.leaderboardStore.caDir" -}}
/etc/nejumi/leaderboard-store-ca
{{- end }}

{{/*
`leaderboard.store` as the standard AWS variables boto3 reads (nejumi_eval.storage.store): the
endpoint, the region, the key pair from `credentialsSecret` (in the release's namespace) by
secretKeyRef, never as a value, and the CA bundle's path. Empty values are left out. A YAML list
of env entries (empty when nothing is set).
*/}}
{{- define "nejumi-operator.leaderboardStore.env" -}}
{{- $s := .Values.leaderboard.store }}
{{- with $s.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $s.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $s.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- if $s.caBundleConfigMap }}
- name: AWS_CA_BUNDLE
  value: {{ include "nejumi-operator.leaderboardStore.caDir" . }}/ca.crt
{{- end }}
{{- end }}

{{/*
The CA bundle's volume and mount (empty without `caBundleConfigMap`).
*/}}
{{- define "nejumi-operator.leaderboardStore.volumes" -}}
{{- with .Values.leaderboard.store.caBundleConfigMap }}
- name: leaderboard-store-ca
  configMap:
    name: {{ . }}
    items:
      - key: {{ $.Values.leaderboard.store.caBundleKey | default "ca.crt" }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "nejumi-operator.leaderboardStore.volumeMounts" -}}
{{- if .Values.leaderboard.store.caBundleConfigMap }}
- name: leaderboard-store-ca
  mountPath: {{ include "nejumi-operator.leaderboardStore.caDir" . }}
  readOnly: true
{{- end }}
{{- end }}
