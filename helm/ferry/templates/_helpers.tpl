{{/* Names, labels and the pod template shared by the three roles. */}}

{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.fullname" -}}
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

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass (dict "root" $ "role" "worker"), role optional. */}}
{{- define "ferry.labels" -}}
helm.sh/chart: {{ include "ferry.chart" .root }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ferry
{{- end }}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .role }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ferry.secretName" -}}
{{- if .Values.secrets.create }}
{{- include "ferry.fullname" . }}
{{- else }}
{{- required "secrets.existingSecret (or secrets.create with secrets.values) is required" .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{- define "ferry.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
A role's Deployment. Pass (dict "root" $ "role" "worker" "values" .Values.worker
"port" 8081 "portName" "health" "env" (dict ...) "replicasManaged" bool).
*/}}
{{- define "ferry.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "ferry.fullname" $root }}-{{ .role }}
  labels:
    {{- include "ferry.labels" (dict "root" $root "role" .role) | nindent 4 }}
spec:
  {{- if not .replicasManaged }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "ferry.selectorLabels" (dict "root" $root "role" .role) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ferry.selectorLabels" (dict "root" $root "role" .role) | nindent 8 }}
        app.kubernetes.io/part-of: ferry
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # Settings are read once at start: a changed ConfigMap or Secret rolls the pods.
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if $root.Values.secrets.create }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- end }}
        {{- if $root.Values.metrics.annotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .port | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "ferry.serviceAccountName" $root }}
      # Ferry never talks to the Kubernetes API.
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .role }}
          image: {{ include "ferry.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .role | quote }}]
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "ferry.fullname" $root }}
            - secretRef:
                name: {{ include "ferry.secretName" $root }}
          env:
            {{- range $name, $value := .env }}
            - name: {{ $name }}
              value: {{ $value | quote }}
            {{- end }}
          # Start-up connects to MongoDB, Kafka and S3 and creates indexes: allow it a minute
          # before liveness counts.
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ .portName }}
            periodSeconds: 2
            failureThreshold: 30
            timeoutSeconds: 3
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ .portName }}
            periodSeconds: 10
            failureThreshold: 3
            timeoutSeconds: 3
          # Each check inside /readyz times out after 2 s, so 4 s always gets an answer.
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ .portName }}
            periodSeconds: 10
            failureThreshold: 3
            timeoutSeconds: 4
          {{- with .preStopSleepSeconds }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ . | quote }}]
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        # The root filesystem is read-only; libraries that want a scratch directory get this.
        - name: tmp
          emptyDir:
            medium: Memory
            sizeLimit: 64Mi
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* A role's PodDisruptionBudget. Pass (dict "root" $ "role" "api" "values" .Values.api). */}}
{{- define "ferry.pdb" -}}
{{- if .values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "ferry.fullname" .root }}-{{ .role }}
  labels:
    {{- include "ferry.labels" (dict "root" .root "role" .role) | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "ferry.selectorLabels" (dict "root" .root "role" .role) | nindent 6 }}
{{- end }}
{{- end }}
