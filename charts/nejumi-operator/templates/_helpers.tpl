{{/*
The chart name (63 characters at most: Kubernetes names and label values).
*/}}
{{- define "nejumi-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: release + chart name, unless the release name already contains the chart name.
Truncated to 63 characters; suffixed names ("-editor") truncate further where they are used.
*/}}
{{- define "nejumi-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A name with a suffix (cluster-scoped roles), still within 63 characters.
Usage: include "nejumi-operator.suffixed" (list . "editor")
*/}}
{{- define "nejumi-operator.suffixed" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "nejumi-operator.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "nejumi-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "nejumi-operator.labels" -}}
helm.sh/chart: {{ include "nejumi-operator.chart" . }}
{{ include "nejumi-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nejumi
{{- end }}

{{/*
Selector labels (immutable on a Deployment: never add to these).
*/}}
{{- define "nejumi-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nejumi-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "nejumi-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nejumi-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The default results destination (`results` values) as the JSON of a spec's `results` section
(nejumi_eval.api.v1alpha1.spec.ResultsSpec, camelCase): `credentialsSecret` becomes
`credentialsSecretRef.name` (the Secret's keys are AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY),
`caBundleConfigMap`/`caBundleKey` become `caBundleRef`; empty values are left out.
*/}}
{{- define "nejumi-operator.resultsJson" -}}
{{- $r := .Values.results }}
{{- $out := dict "uri" $r.uri }}
{{- with $r.endpoint }}{{ $_ := set $out "endpoint" . }}{{ end }}
{{- with $r.region }}{{ $_ := set $out "region" . }}{{ end }}
{{- with $r.credentialsSecret }}{{ $_ := set $out "credentialsSecretRef" (dict "name" .) }}{{ end }}
{{- with $r.caBundleConfigMap }}
{{- $_ := set $out "caBundleRef" (dict "name" . "key" ($r.caBundleKey | default "ca.crt")) }}
{{- end }}
{{- if not (kindIs "invalid" $r.pathStyle) }}{{ $_ := set $out "pathStyle" $r.pathStyle }}{{ end }}
{{- toJson $out }}
{{- end }}

{{/*
Images: the tag defaults to the chart's appVersion.
*/}}
{{- define "nejumi-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "nejumi-operator.evaluatorImage" -}}
{{- printf "%s:%s" .Values.evaluator.image.repository (default .Chart.AppVersion .Values.evaluator.image.tag) }}
{{- end }}

{{/*
The operator's rules in the namespaces it serves: in a ClusterRole when it watches every namespace,
in a Role per namespace otherwise. Only what nejumi_operator and kopf actually call.
*/}}
{{- define "nejumi-operator.operatorRules" -}}
# kopf lists and watches NejumiEvaluations; the operator reads one (get) before each status write;
# kopf patches the object itself for its finalizer and its progress/last-handled annotations.
- apiGroups: ["nejumi.wandb.ai"]
  resources: ["nejumievaluations"]
  verbs: ["get", "list", "watch", "patch"]
# Status is observation: the operator merge-patches /status (kopf also patches it through /status
# for handler results). No update: nothing PUTs the status.
- apiGroups: ["nejumi.wandb.ai"]
  resources: ["nejumievaluations/status"]
  verbs: ["patch"]
# NejumiLeaderboards: kopf lists and watches them (and patches its annotations on them); the
# operator reads one before each computation and merge-patches its /status with the board.
- apiGroups: ["nejumi.wandb.ai"]
  resources: ["nejumileaderboards"]
  verbs: ["get", "list", "watch", "patch"]
# Their status is the computed board: merge-patched, never PUT.
- apiGroups: ["nejumi.wandb.ai"]
  resources: ["nejumileaderboards/status"]
  verbs: ["patch"]
# A leaderboard's W&B report Job is owned by it (blockOwnerDeletion, as the evaluation Jobs).
- apiGroups: ["nejumi.wandb.ai"]
  resources: ["nejumileaderboards/finalizers"]
  verbs: ["update"]
# The Jobs carry an ownerReference with blockOwnerDeletion: true; where the
# OwnerReferencesPermissionEnforcement admission plugin is on, that needs update on the owner's
# finalizers subresource.
- apiGroups: ["nejumi.wandb.ai"]
  resources: ["nejumievaluations/finalizers"]
  verbs: ["update"]
# One Job per evaluation generation and stage: create it (409 = it exists, then get it), and watch
# Jobs with the nejumi.wandb.ai/evaluation label (kopf event handler) to derive status. Delete only an
# earlier generation's unfinished Job when an edit replaces it (by UID precondition), so it frees its
# GPUs; otherwise owner references let the garbage collector remove them. Never patch.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
# A model served across nodes (resources.nodes > 1): its serve stage is a LeaderWorkerSet group
# (sigs.k8s.io/lws), made when the stage starts, read (and listed by label) to follow it, patched to
# release it (replicas 0, and the record of how the stage ended) when generation ends, and deleted
# when an edit replaces an unfinished one. Nothing is granted where LWS is not installed.
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["create", "get", "list", "patch", "delete"]
# The workspace PVC of each evaluation without workspace.pvcName, created before its Job (409 = it
# exists, then get it). Never patch/delete: an owner reference lets the garbage collector remove it
# with the evaluation (none with workspace.retain: the user deletes it).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["create", "get"]
# The Job's pods, listed by label to read the evaluator's exit code and termination message
# (the results summary), and watched so a pod that is blocked or starts shows in status at once.
# Read only: never logs or exec.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Live progress (nejumi_operator/reconcile/progress.py): per evaluation, a ConfigMap the evaluator
# writes, and a ServiceAccount + Role + RoleBinding letting the Job's pods get/patch that one
# ConfigMap by name. The operator creates them (409 = they exist, then get them), watches the
# ConfigMaps it labelled, and holds get/patch itself because RBAC lets it grant only what it has.
# Never update/delete: owner references let the garbage collector remove them.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "list", "watch", "patch"]
# Kueue's Workload of a suspended Job, read to say why it waits (its QuotaReserved message) or
# that it was preempted. Read only; nothing is granted if Kueue is not installed.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
# The evaluator pods' own ServiceAccount (its token may only write the progress ConfigMap).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "get"]
# The Role + RoleBinding granting it that: no escalate/bind verbs, so no more than the operator holds.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "get"]
# Secrets, one by name, metadata only: before a Job exists the operator reads the labels of each
# Secret a spec names (the consent label, nejumi_operator/policy.py), asking the API server for
# PartialObjectMetadata. RBAC cannot grant metadata without data: `get` is the least there is; no
# list or watch, and the operator never requests or logs a Secret's data.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events: posted on the NejumiEvaluation for every transition (and by kopf about handler errors);
# listed to read why a Job cannot create its pod (FailedCreate: quota, PodSecurity, a webhook).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end }}

{{/*
The namespaces served: empty = all (cluster-wide mode).
*/}}
{{- define "nejumi-operator.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}
