// aks-mesh-vap-apiserver: a test API server that serves our CRDs (the upstream apiextensions-apiserver)
// and runs the upstream ValidatingAdmissionPolicy admission plugin on every write, with the policies
// and bindings loaded at start from files (config/admission). It authenticates client certificates,
// front-proxy (requestheader) headers and a static token file, so a test can present any
// request.userInfo, including the extra `authentication.kubernetes.io/node-name` that a Kubernetes
// >= 1.30 API server derives from a node-bound service-account token (KEP-4193), through the header
// `X-Remote-Extra-Authentication.kubernetes.io%2fnode-name`.
//
// Why this exists: no kube-apiserver >= 1.30 can be built on our machines, but Debian packages the
// upstream server libraries (k8s.io/apiserver, k8s.io/apiextensions-apiserver). The admission code,
// the CEL environment and the CRD handler here are the upstream ones, built from those packages.
//
// What differs from a real kube-apiserver, on purpose:
//   - authorization allows every authenticated request (no RBAC here; RBAC is tested on the 1.20
//     TestCluster): the policy is the only guard this server evaluates;
//   - the policies come from files through an in-memory client (client-go's fake clientset) that
//     feeds the plugin's informers, instead of from admissionregistration objects stored in etcd:
//     the plugin's source, matcher, compiler and dispatcher are the ones a cluster runs;
//   - it serves apiextensions.k8s.io and custom resources only (no core/v1: no Nodes, no Namespaces);
//   - flags it does not know are ignored, so sandbox/apiserver.ts can start it with kube-apiserver's
//     flags (its certificates, etcd, token file, ports and process handling are reused as they are).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/spf13/cobra"
	noopoteltrace "go.opentelemetry.io/otel/trace/noop"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/apiserver/pkg/util/webhook"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/component-base/cli"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	var policyFiles []string
	var tokenFile, requestHeaderCA string

	cmd := &cobra.Command{
		Use:   "aks-mesh-vap-apiserver",
		Short: "apiextensions-apiserver with the upstream ValidatingAdmissionPolicy plugin and policies loaded from files (tests only)",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if len(o.RecommendedOptions.Authentication.RequestHeader.ClientCAFile) == 0 {
				// Front-proxy certificates are signed by the cluster CA unless told otherwise: the test
				// harness knows only that one, and --requestheader-allowed-names still narrows who may assert.
				o.RecommendedOptions.Authentication.RequestHeader.ClientCAFile = requestHeaderCA
			}
			// Only the ValidatingAdmissionPolicy plugin, whatever the flags say (the harness passes
			// kube-apiserver's --disable-admission-plugins): the webhook plugins and NamespaceLifecycle need a core API.
			o.RecommendedOptions.Admission.EnablePlugins = []string{validating.PluginName}
			o.RecommendedOptions.Admission.DisablePlugins = []string{"NamespaceLifecycle", "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook", "MutatingAdmissionPolicy"}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return run(c, o, policyFiles, tokenFile)
		},
	}
	// kube-apiserver's flags that this server has no use for (the harness passes them) are ignored.
	cmd.FParseErrWhitelist.UnknownFlags = true
	cmd.SetContext(ctx)
	fs := cmd.Flags()
	o.AddFlags(fs)
	fs.StringArrayVar(&policyFiles, "admission-policy-file", nil,
		"YAML file of ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding objects to enforce (repeatable)")
	fs.StringVar(&tokenFile, "token-auth-file", "", "static token file, as kube-apiserver's (token,user,uid,\"group1,group2\")")
	// kube-apiserver's --client-ca-file is o.RecommendedOptions.Authentication.ClientCert.ClientCA;
	// remember it for the front-proxy default above.
	fs.Lookup("client-ca-file").Value = &teeValue{Value: fs.Lookup("client-ca-file").Value, also: &requestHeaderCA}
	a := o.RecommendedOptions.Authentication
	a.RemoteKubeConfigFileOptional = true
	a.SkipInClusterLookup = true
	a.RequestHeader.UsernameHeaders = []string{"X-Remote-User"}
	a.RequestHeader.GroupHeaders = []string{"X-Remote-Group"}
	a.RequestHeader.ExtraHeaderPrefixes = []string{"X-Remote-Extra-"}
	// No core API server to delegate to: no flow control, no in-cluster lookups.
	o.RecommendedOptions.Features.EnablePriorityAndFairness = false
	os.Exit(cli.Run(cmd))
}

// teeValue records a flag's value in a second place as it is set.
type teeValue struct {
	Value interface {
		String() string
		Set(string) error
		Type() string
	}
	also *string
}

func (t *teeValue) String() string { return t.Value.String() }
func (t *teeValue) Type() string   { return t.Value.Type() }
func (t *teeValue) Set(v string) error {
	*t.also = v
	return t.Value.Set(v)
}

func run(c *cobra.Command, o *options.CustomResourceDefinitionsServerOptions, policyFiles []string, tokenFile string) error {
	objects, err := loadPolicies(policyFiles)
	if err != nil {
		return err
	}
	ro := o.RecommendedOptions
	// Built by hand below, from the in-memory client; the delegating authorizer would need a core API.
	admissionOptions := ro.Admission
	ro.Admission = nil
	ro.CoreAPI = nil
	ro.Authorization = nil // nil: allow every authenticated request

	if err := ro.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, nil); err != nil {
		return fmt.Errorf("self-signed certificates: %w", err)
	}
	serverConfig := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := o.ServerRunOptions.ApplyTo(&serverConfig.Config); err != nil {
		return err
	}
	client := fake.NewSimpleClientset(objects...)
	serverConfig.SharedInformerFactory = informers.NewSharedInformerFactory(client, 0)
	if err := ro.ApplyTo(serverConfig); err != nil {
		return err
	}
	if err := o.APIEnablement.ApplyTo(&serverConfig.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return err
	}
	if tokenFile != "" {
		tokens, err := tokenfile.NewCSV(tokenFile)
		if err != nil {
			return fmt.Errorf("--token-auth-file %s: %w", tokenFile, err)
		}
		serverConfig.Authentication.Authenticator = union.New(bearertoken.New(tokens), serverConfig.Authentication.Authenticator)
	}

	dynamicClient := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	if err := admissionOptions.ApplyTo(&serverConfig.Config, serverConfig.SharedInformerFactory, client, dynamicClient,
		ro.FeatureGate, serverConfig.EffectiveVersion); err != nil {
		return fmt.Errorf("admission: %w", err)
	}

	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))
	config := &apiserver.Config{
		GenericConfig: serverConfig,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: options.NewCRDRESTOptionsGetter(*ro.Etcd, serverConfig.ResourceTransformers, serverConfig.StorageObjectCountTracker),
			ServiceResolver:      &serviceResolver{serverConfig.SharedInformerFactory.Core().V1().Services().Lister()},
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, serverConfig.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}
	server, err := config.Complete().New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "aks-mesh-vap-apiserver: enforcing %d admission objects from %v\n", len(objects), policyFiles)
	return server.GenericAPIServer.PrepareRun().RunWithContext(c.Context())
}

// loadPolicies reads ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding objects
// (admissionregistration.k8s.io/v1) from multi-document YAML files; anything else is an error.
func loadPolicies(paths []string) ([]runtime.Object, error) {
	var objects []runtime.Object
	decoder := scheme.Codecs.UniversalDeserializer()
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, gvk, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
			}
			if gvk.Group != "admissionregistration.k8s.io" || gvk.Version != "v1" ||
				(gvk.Kind != "ValidatingAdmissionPolicy" && gvk.Kind != "ValidatingAdmissionPolicyBinding") {
				return nil, fmt.Errorf("%s: document %d: %s is not a ValidatingAdmissionPolicy(Binding) of admissionregistration.k8s.io/v1", path, i, gvk)
			}
			setDefaults(obj)
			objects = append(objects, obj)
		}
	}
	if len(objects) == 0 {
		return nil, errors.New("no policies: pass --admission-policy-file")
	}
	return objects, nil
}

// setDefaults applies what kube-apiserver's defaulting does to these objects on their way into
// etcd (k8s.io/kubernetes pkg/apis/admissionregistration/v1/defaults.go, not among the libraries):
// the plugin reads stored objects, and refuses a policy whose selectors are nil.
func setDefaults(obj runtime.Object) {
	defaultMatch := func(m *admissionregistrationv1.MatchResources) {
		if m == nil {
			return
		}
		if m.MatchPolicy == nil {
			equivalent := admissionregistrationv1.Equivalent
			m.MatchPolicy = &equivalent
		}
		if m.NamespaceSelector == nil {
			m.NamespaceSelector = &metav1.LabelSelector{}
		}
		if m.ObjectSelector == nil {
			m.ObjectSelector = &metav1.LabelSelector{}
		}
		for _, rules := range [][]admissionregistrationv1.NamedRuleWithOperations{m.ResourceRules, m.ExcludeResourceRules} {
			for i := range rules {
				if rules[i].Scope == nil {
					all := admissionregistrationv1.AllScopes
					rules[i].Scope = &all
				}
			}
		}
	}
	switch o := obj.(type) {
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		if o.Spec.FailurePolicy == nil {
			fail := admissionregistrationv1.Fail
			o.Spec.FailurePolicy = &fail
		}
		defaultMatch(o.Spec.MatchConstraints)
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		defaultMatch(o.Spec.MatchResources)
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

type serviceResolver struct {
	services corev1listers.ServiceLister
}

func (r *serviceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return proxy.ResolveCluster(r.services, namespace, name, port)
}
