{{/* Names: <release>-medvision-<component>, cut to 63 characters. */}}
{{- define "medvision.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "medvision.component" -}}
{{- printf "%s-%s" (include "medvision.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "medvision.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: medvision
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "medvision.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* image: registry/repo:tag of one entry of .Values.images */}}
{{- define "medvision.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "medvision.secretName" -}}
{{- printf "%s-env" (include "medvision.fullname" .) -}}
{{- end -}}

{{/* The Secret and key of a setting: the existing Secret or the chart's own. */}}
{{- define "medvision.secretRef" -}}
{{- $cfg := .cfg -}}
secretKeyRef:
  name: {{ $cfg.existingSecret | default (include "medvision.secretName" .root) }}
  key: {{ .key }}
{{- end -}}

{{/* Environment of every control-plane container (runtime role). */}}
{{- define "medvision.env" -}}
{{- $root := . -}}
- name: MEDVISION_DATABASE_URL
  valueFrom:
    {{- include "medvision.secretRef" (dict "root" $root "cfg" .Values.database "key" .Values.database.existingSecretKey) | nindent 4 }}
- name: MEDVISION_REDIS_URL
  valueFrom:
    {{- include "medvision.secretRef" (dict "root" $root "cfg" .Values.redis "key" .Values.redis.existingSecretKey) | nindent 4 }}
- name: MEDVISION_S3_ENDPOINT
  value: {{ .Values.s3.endpoint | quote }}
- name: MEDVISION_S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
- name: MEDVISION_S3_REGION
  value: {{ .Values.s3.region | quote }}
- name: MEDVISION_S3_SECURE
  value: {{ .Values.s3.secure | quote }}
- name: MEDVISION_S3_ACCESS_KEY
  valueFrom:
    {{- include "medvision.secretRef" (dict "root" $root "cfg" .Values.s3 "key" .Values.s3.accessKeyKey) | nindent 4 }}
- name: MEDVISION_S3_SECRET_KEY
  valueFrom:
    {{- include "medvision.secretRef" (dict "root" $root "cfg" .Values.s3 "key" .Values.s3.secretKeyKey) | nindent 4 }}
- name: MEDVISION_SECRET_KEY
  valueFrom:
    {{- include "medvision.secretRef" (dict "root" $root "cfg" .Values.secretKey "key" .Values.secretKey.existingSecretKey) | nindent 4 }}
- name: MEDVISION_TRITON_URL
  value: {{ printf "%s:%v" (include "medvision.component" (dict "root" $root "name" "triton")) .Values.triton.ports.grpc | quote }}
- name: MEDVISION_MIGRATE_ON_STARTUP
  value: "false"
- name: MEDVISION_DATA_DIR
  value: /tmp/medvision
{{- if .Values.trustedProxies }}
- name: MEDVISION_TRUSTED_PROXIES
  value: {{ .Values.trustedProxies | quote }}
{{- end }}
{{- range $name, $value := .Values.config }}
- name: {{ printf "MEDVISION_%s" (upper $name) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- if .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "deployment.environment=%s,k8s.namespace.name=%s" .Release.Name .Release.Namespace | quote }}
{{- end -}}

{{- define "medvision.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "medvision.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* Writable scratch for a read-only root filesystem. */}}
{{- define "medvision.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .sizeLimit }}
{{- end -}}

{{- define "medvision.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PromQL label filter selecting this release's series. */}}
{{- define "medvision.promSelector" -}}
{{- printf "namespace=\"%s\",service=\"%s\"" .root.Release.Namespace (include "medvision.component" (dict "root" .root "name" .name)) -}}
{{- end -}}

{{/* NetworkPolicy egress to one external service: {to: [peers], ports: [...]} */}}
{{- define "medvision.egressRule" -}}
- to:
    {{- toYaml .to | nindent 4 }}
  ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}
{{- define "medvision.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{/* Environment of a model-store fetch (fetch_models.py): the store URI, the S3 endpoint as a
URL, region, and credentials (the model store's own Secret or the object store's). */}}
{{- define "medvision.modelStoreEnv" -}}
{{- $s3url := .Values.s3.endpoint -}}
{{- if not (contains "://" $s3url) -}}
{{- $s3url = printf "%s://%s" (ternary "https" "http" .Values.s3.secure) $s3url -}}
{{- end -}}
- name: MODEL_STORE_URI
  value: {{ .Values.triton.modelRepository.storeUri | quote }}
- name: AWS_ENDPOINT_URL
  value: {{ $s3url | quote }}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
- name: HOME
  value: /tmp
{{- if .Values.triton.modelRepository.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ .Values.triton.modelRepository.existingSecret }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.triton.modelRepository.existingSecret }}, key: AWS_SECRET_ACCESS_KEY}
{{- else }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    {{- include "medvision.secretRef" (dict "root" . "cfg" .Values.s3 "key" .Values.s3.accessKeyKey) | nindent 4 }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    {{- include "medvision.secretRef" (dict "root" . "cfg" .Values.s3 "key" .Values.s3.secretKeyKey) | nindent 4 }}
{{- end }}
{{- end -}}
