{{/*
Names. The mesh is cluster-wide (cluster-scoped CRDs and ClusterRoles, and an admission policy that
names the service accounts aks-mesh-agent and aks-mesh-gateway), so one release per cluster and fixed
object names: "aks-mesh-<component>" in the release namespace. No nameOverride/fullnameOverride: a
renamed service account would fall outside the node-bound-writes policy.
*/}}
{{- define "aks-mesh.fullname" -}}
aks-mesh
{{- end -}}

{{- define "aks-mesh.namespace" -}}
{{ .Release.Namespace }}
{{- end -}}

{{/* The Secret (key "token") of the live streams' token: agent.stream.existingSecret, else the chart's own. */}}
{{- define "aks-mesh.streamSecret" -}}
{{ .Values.agent.stream.existingSecret | default (printf "%s-stream-token" (include "aks-mesh.fullname" .)) }}
{{- end -}}

{{- define "aks-mesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Standard labels. Call with (dict "ctx" $ "component" "agent"). */}}
{{- define "aks-mesh.labels" -}}
{{ include "aks-mesh.selectorLabels" . }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Values.image.tag | default .ctx.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: aks-mesh
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
The stable subset, for selectors: name and component only, exactly the agent DaemonSet's selector of
the first chart release. spec.selector is immutable, so adding a key (app.kubernetes.io/instance)
would make every `helm upgrade` from an older install fail; the instance stays a label (one release
per cluster anyway).
*/}}
{{- define "aks-mesh.selectorLabels" -}}
app.kubernetes.io/name: aks-mesh
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The Linux nodeSelector merged with the user's (theirs win on other keys; the OS stays linux). */}}
{{- define "aks-mesh.nodeSelector" -}}
{{- $sel := merge (dict "kubernetes.io/os" "linux") (deepCopy (default (dict) .)) -}}
{{- $_ := set $sel "kubernetes.io/os" "linux" -}}
{{ toYaml $sel }}
{{- end -}}

{{/*
The container hardening every container of the chart gets: no privilege escalation, a read-only root
filesystem (writable paths are volumes), the runtime's default seccomp profile, every capability
dropped but the ones asked for. runAsUser 0: the agent and wireguard-go configure the node's network
(NET_ADMIN is only effective for root without ambient capabilities), nothing else of root's is kept.
Call with (dict "caps" (list "NET_ADMIN")) or (dict "caps" (list)).
*/}}
{{- define "aks-mesh.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsUser: 0
runAsNonRoot: false
privileged: false
seccompProfile: {type: RuntimeDefault}
capabilities:
  drop: [ALL]
  {{- with .caps }}
  add: {{ toJson . }}
  {{- end }}
{{- end -}}

{{/*
The agent's settings as AKS_MESH_* environment variables: the agent DaemonSet's container gets them,
and the uninstall hook copies them into the cleanup DaemonSet, so both agree on the interface, table,
rule priority, fwmark and CIDRs.
*/}}
{{- define "aks-mesh.agentEnv" -}}
- name: AKS_MESH_NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- {name: AKS_MESH_WIREGUARD, value: {{ .Values.agent.wireguardMode | quote }}}
- {name: AKS_MESH_INTERFACE, value: {{ .Values.mesh.interface | quote }}}
- {name: AKS_MESH_LISTEN_PORT, value: {{ .Values.mesh.listenPort | quote }}}
- {name: AKS_MESH_MESH_CIDR, value: {{ .Values.mesh.cidr | quote }}}
- {name: AKS_MESH_TABLE, value: {{ .Values.mesh.table | quote }}}
- {name: AKS_MESH_FWMARK, value: {{ .Values.mesh.fwmark | quote }}}
- {name: AKS_MESH_RULE_PRIORITY, value: {{ .Values.mesh.rulePriority | quote }}}
- {name: AKS_MESH_MTU, value: {{ .Values.mesh.mtu | quote }}}
- {name: AKS_MESH_KEEPALIVE, value: {{ .Values.mesh.keepalive | quote }}}
- {name: AKS_MESH_RESYNC, value: {{ .Values.mesh.resyncSeconds | quote }}}
- {name: AKS_MESH_SERVICE_CIDR, value: {{ join "," .Values.mesh.serviceCIDRs | quote }}}
- {name: AKS_MESH_CLUSTER_CIDR, value: {{ join "," .Values.mesh.clusterCIDRs | quote }}}
- {name: AKS_MESH_NODE_CIDR, value: {{ join "," .Values.mesh.nodeCIDRs | quote }}}
- {name: AKS_MESH_KEY_FILE, value: {{ printf "%s/private.key" .Values.agent.keyDir | quote }}}
- {name: AKS_MESH_METRICS_ADDRESS, value: {{ printf "0.0.0.0:%v" .Values.agent.metricsPort | quote }}}
- {name: AKS_MESH_LOG_LEVEL, value: {{ .Values.agent.logLevel | quote }}}
- {name: AKS_MESH_LOG_FORMAT, value: {{ .Values.agent.logFormat | quote }}}
{{- end -}}

{{/* The pod CIDRs the gateway routes: konnectivity.gateway.podCIDRs, else the cluster's pod CIDRs. */}}
{{- define "aks-mesh.gatewayPodCIDRs" -}}
{{ join "," (default .Values.mesh.clusterCIDRs .Values.konnectivity.gateway.podCIDRs) }}
{{- end -}}

{{/*
The gateway sidecar of a Konnectivity agent pod: exactly the container and volumes of gateway/sidecar.ts,
which `aks-mesh gateway-patch` prints (e2e/chart.test.ts compares them): the seed's command and flags,
every setting the agents get that must agree across members (mesh CIDR, fwmark, table, rule priority,
keepalive, resync, service, cluster and node CIDRs) and their log level and format, its own listen
port (51821, published as a hostPort on the node's address that --gateway-endpoint=$(NODE_IP)
advertises). Not the MTU: its underlay is the pod's interface, which `auto` reads.
*/}}
{{- define "aks-mesh.gatewaySidecar" -}}
{{- $gw := .Values.konnectivity.gateway -}}
{{- /* The agents' hostNetwork wireguard-go holds mesh.listenPort on every mesh node: a hostPort of
the same number could be scheduled on none of them. */ -}}
{{- if and $gw.hostPort (eq (int $gw.listenPort) (int .Values.mesh.listenPort)) -}}
{{- fail (printf "konnectivity.gateway.listenPort (%v) must differ from mesh.listenPort (%v) while konnectivity.gateway.hostPort is true: the agents already hold that UDP port on every node's address, so the Konnectivity pod could be scheduled nowhere" $gw.listenPort .Values.mesh.listenPort) -}}
{{- end -}}
{{- $probe := dict "port" 9587 -}}
- name: aks-mesh-gateway
  image: {{ include "aks-mesh.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["./gateway"]
  args:
    - --node-name=$(NODE_NAME)
    - --gateway-endpoint=$(NODE_IP)
    - --pod-cidr={{ include "aks-mesh.gatewayPodCIDRs" . }}
  env:
    - name: NODE_NAME
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: spec.nodeName}}
    - name: NODE_IP
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: status.hostIP}}
    - name: POD_IP
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: status.podIP}}
    - {name: AKS_MESH_MESH_CIDR, value: {{ .Values.mesh.cidr | quote }}}
    - {name: AKS_MESH_LISTEN_PORT, value: {{ $gw.listenPort | quote }}}
    - {name: AKS_MESH_FWMARK, value: {{ .Values.mesh.fwmark | quote }}}
    - {name: AKS_MESH_TABLE, value: {{ .Values.mesh.table | quote }}}
    - {name: AKS_MESH_RULE_PRIORITY, value: {{ .Values.mesh.rulePriority | quote }}}
    - {name: AKS_MESH_KEEPALIVE, value: {{ .Values.mesh.keepalive | quote }}}
    - {name: AKS_MESH_RESYNC, value: {{ .Values.mesh.resyncSeconds | quote }}}
    - {name: AKS_MESH_SERVICE_CIDR, value: {{ join "," .Values.mesh.serviceCIDRs | quote }}}
    - {name: AKS_MESH_CLUSTER_CIDR, value: {{ join "," .Values.mesh.clusterCIDRs | quote }}}
    - {name: AKS_MESH_NODE_CIDR, value: {{ join "," .Values.mesh.nodeCIDRs | quote }}}
    - {name: AKS_MESH_LOG_FORMAT, value: {{ .Values.agent.logFormat | quote }}}
    - {name: AKS_MESH_LOG_LEVEL, value: {{ .Values.agent.logLevel | quote }}}
    {{- /* Its stream (127.0.0.1:9588, the pod's loopback, which the Konnectivity agent container
    shares) asks for the agents' token: this Deployment is in the release namespace, where the Secret
    is, mounted into this container alone (gateway/sidecar.ts streamTokenSecret). */}}
    {{- if .Values.agent.stream.enabled }}
    - {name: AKS_MESH_STREAM_ADDRESS, value: "127.0.0.1:9588"}
    - {name: AKS_MESH_STREAM_REQUIRED, value: "false"}
    - {name: AKS_MESH_STREAM_TOKEN_FILE, value: /var/run/aks-mesh-stream/token}
    {{- else }}
    - {name: AKS_MESH_STREAM_ADDRESS, value: "off"}
    {{- end }}
  ports:
    - name: wireguard
      containerPort: {{ $gw.listenPort }}
      {{- if $gw.hostPort }}
      hostPort: {{ $gw.listenPort }}
      {{- end }}
      protocol: UDP
    - {name: gw-metrics, containerPort: 9587, protocol: TCP}
  resources: {{- toYaml $gw.resources | nindent 4 }}
  securityContext:
    {{- include "aks-mesh.securityContext" (dict "caps" (list "NET_ADMIN")) | nindent 4 }}
  volumeMounts:
    - {name: aks-mesh-gateway-tun, mountPath: /dev/net/tun}
    - {name: aks-mesh-gateway-run, mountPath: /var/run/wireguard}
    - {name: aks-mesh-gateway-keys, mountPath: /var/lib/aks-mesh}
    - {name: aks-mesh-gateway-tmp, mountPath: /tmp}
    # The control socket (aks-mesh status --local, reconcile, diff through kubectl exec).
    - {name: aks-mesh-gateway-control, mountPath: /var/run/aks-mesh}
    # Its own API token (the pod mounts none: the Konnectivity agent container must not get it).
    - {name: aks-mesh-gateway-api, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
    {{- if .Values.agent.stream.enabled }}
    - {name: aks-mesh-gateway-stream, mountPath: /var/run/aks-mesh-stream, readOnly: true}
    {{- end }}
  # Ready once its Gateway is registered and the device holds every node.
  readinessProbe:
    httpGet: {path: /readyz, port: 9587, scheme: HTTP}
    initialDelaySeconds: 2
    timeoutSeconds: 1
    periodSeconds: 10
    successThreshold: 1
    failureThreshold: 3
  livenessProbe:
    httpGet: {path: /healthz, port: 9587, scheme: HTTP}
    initialDelaySeconds: 10
    timeoutSeconds: 1
    periodSeconds: 10
    successThreshold: 1
    failureThreshold: 6
  terminationMessagePath: /dev/termination-log
  terminationMessagePolicy: FallbackToLogsOnError
{{- end -}}

{{/* The volumes the gateway sidecar mounts: its key in memory (regenerated per pod; its Gateway carries the public key). */}}
{{- define "aks-mesh.gatewayVolumes" -}}
- {name: aks-mesh-gateway-tun, hostPath: {path: /dev/net/tun, type: CharDevice}}
- {name: aks-mesh-gateway-run, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
- {name: aks-mesh-gateway-keys, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
- {name: aks-mesh-gateway-tmp, emptyDir: {sizeLimit: 64Mi}}
- {name: aks-mesh-gateway-control, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
# What automountServiceAccountToken would mount, for the gateway container only. defaultMode 292 is 0444.
- name: aks-mesh-gateway-api
  projected:
    defaultMode: 292
    sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3607}
      - configMap:
          name: kube-root-ca.crt
          items: [{key: ca.crt, path: ca.crt}]
      - downwardAPI:
          items:
            - path: namespace
              fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}
{{- if .Values.agent.stream.enabled }}
# The live stream's token, for the gateway container only; 256 is 0400.
- name: aks-mesh-gateway-stream
  secret:
    secretName: {{ include "aks-mesh.streamSecret" . }}
    defaultMode: 256
    items: [{key: token, path: token}]
{{- end }}
{{- end -}}
