// Package validate checks the deployment files under deploy/ offline: the
// Kubernetes manifests rendered by kustomize and decoded strictly against the
// Kubernetes API types, and the Grafana dashboard's queries. It is a module of
// its own so that kustomize and the Kubernetes types stay out of the
// service's module: cd deploy/validate && go test ./...
package validate

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is the service's repository, seen from this module.
const repoRoot = "../.."

// kustomizations are the deployable directories under deploy/k8s.
var kustomizations = []string{"base", "scale"}

// rendered is one kustomization's output, decoded into API types.
type rendered struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	secrets     []*corev1.Secret
	claims      []*corev1.PersistentVolumeClaim
	policies    []*networkingv1.NetworkPolicy
	budgets     []*policyv1.PodDisruptionBudget
}

// decoders are the kinds the manifests may hold; any other kind fails.
var decoders = map[string]func(r *rendered, doc []byte) error{
	"apps/v1/Deployment": func(r *rendered, doc []byte) error {
		return decode(doc, &r.deployments)
	},
	"v1/Service":               func(r *rendered, doc []byte) error { return decode(doc, &r.services) },
	"v1/Secret":                func(r *rendered, doc []byte) error { return decode(doc, &r.secrets) },
	"v1/PersistentVolumeClaim": func(r *rendered, doc []byte) error { return decode(doc, &r.claims) },
	"networking.k8s.io/v1/NetworkPolicy": func(r *rendered, doc []byte) error {
		return decode(doc, &r.policies)
	},
	"policy/v1/PodDisruptionBudget": func(r *rendered, doc []byte) error {
		return decode(doc, &r.budgets)
	},
}

// decode appends doc, decoded with unknown and duplicate fields refused, to
// *list.
func decode[T any](doc []byte, list *[]*T) error {
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// inMemory copies dir (deploy/k8s) into an in-memory file system at /k8s,
// leaving out the secrets/ folders an operator may have filled, and writes a
// placeholder for every file a secretGenerator reads, so that the render
// needs no secret and shows any value the manifests themselves carry.
func inMemory(t *testing.T, dir string) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	var kfiles []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "secrets" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if d.Name() == "kustomization.yaml" {
			kfiles = append(kfiles, rel)
		}
		return mem.WriteFile(path.Join("/k8s", filepath.ToSlash(rel)), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, kf := range kfiles {
		b, err := os.ReadFile(filepath.Join(dir, kf))
		if err != nil {
			t.Fatal(err)
		}
		var k types.Kustomization
		if err := yaml.UnmarshalStrict(b, &k); err != nil {
			t.Fatalf("%s: %v", kf, err)
		}
		for _, g := range k.SecretGenerator {
			for _, src := range g.FileSources {
				key, file, ok := strings.Cut(src, "=")
				if !ok {
					file = src
					key = path.Base(src)
				}
				p := path.Join("/k8s", path.Dir(filepath.ToSlash(kf)), file)
				if err := mem.WriteFile(p, []byte(placeholder(key))); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return mem
}

func placeholder(key string) string { return "placeholder-for-" + key }

// render builds the kustomization at /k8s/name and decodes every object.
func render(mem filesys.FileSystem, name string) (*rendered, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, path.Join("/k8s", name))
	if err != nil {
		return nil, err
	}
	r := &rendered{}
	for _, res := range m.Resources() {
		doc, err := res.AsYAML()
		if err != nil {
			return nil, err
		}
		gvk := res.GetApiVersion() + "/" + res.GetKind()
		dec, ok := decoders[gvk]
		if !ok {
			return nil, fmt.Errorf("%s %s: a kind these checks do not know", gvk, res.GetName())
		}
		if err := dec(r, doc); err != nil {
			return nil, fmt.Errorf("%s %s: %w", gvk, res.GetName(), err)
		}
	}
	return r, nil
}

func TestManifests(t *testing.T) {
	known := configEnv(t)
	mem := inMemory(t, filepath.Join(repoRoot, "deploy", "k8s"))
	for _, name := range kustomizations {
		t.Run(name, func(t *testing.T) {
			r, err := render(mem, name)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range check(r, known) {
				t.Error(problem)
			}
		})
	}
}

// TestManifestsHostile proves that the checks bite: each broken variant of
// the manifests must fail to render, to decode, or a check.
func TestManifestsHostile(t *testing.T) {
	known := configEnv(t)
	cases := []struct {
		name, kustomization, file, old, new, want string
	}{
		{"an unknown field", "base", "base/deployment.yaml",
			"livenessProbe:", "livenessProbes:", `unknown field "livenessProbes"`},
		{"a field twice", "base", "base/service.yaml",
			"  type: ClusterIP\n", "  type: ClusterIP\n  type: NodePort\n", `mapping key "type" already defined`},
		{"an unknown kind", "base", "base/pvc.yaml",
			"kind: PersistentVolumeClaim", "kind: PersistentVolume", "a kind these checks do not know"},
		{"a key no secret holds", "scale", "scale/deployment.yaml",
			"key: redis-url", "key: redis-uri", `key "redis-uri"`},
		{"a typo'd setting", "base", "base/deployment.yaml",
			"DATA_API_DIALOGUES_MAX_PENDING_BYTES", "DATA_API_DIALOGUES_MAX_PENDING_BYTE", "DATA_API_DIALOGUES_MAX_PENDING_BYTE is not a setting"},
		{"a grace period shorter than the drain", "base", "base/deployment.yaml",
			"terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds 15"},
		{"the latest tag", "base", "base/kustomization.yaml",
			"newTag: local", "newTag: latest", "latest"},
		{"two pods on one SQLite file", "base", "base/deployment.yaml",
			"type: Recreate", "type: RollingUpdate", "Recreate"},
		{"no readiness probe", "base", "base/deployment.yaml",
			"path: /readyz", "path: /healthz", "readiness probe"},
		{"GOMEMLIMIT at the limit", "base", "base/deployment.yaml",
			"value: 900MiB", "value: 1GiB", "GOMEMLIMIT"},
		{"a writable root", "base", "base/deployment.yaml",
			"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"the journal on the database's volume", "base", "base/deployment.yaml",
			"value: /var/lib/data-api-journal", "value: /var/lib/data-api/journal", "shares the database's volume"},
		{"no journal", "base", "base/deployment.yaml",
			"- name: DATA_API_JOURNAL_DIR\n              value: /var/lib/data-api-journal\n", "", "DATA_API_JOURNAL_DIR must name"},
		{"a journal the replicas cannot share", "scale", "scale/kustomization.yaml",
			"accessModes: [ReadWriteMany]", "accessModes: [ReadWriteOnce]", "must be ReadWriteMany"},
		{"a policy for other pods", "base", "base/networkpolicy.yaml",
			"  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: data-api",
			"  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: other", "no NetworkPolicy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := inMemory(t, filepath.Join(repoRoot, "deploy", "k8s"))
			p := "/k8s/" + tc.file
			b, err := mem.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(tc.old)) {
				t.Fatalf("%s does not hold %q", tc.file, tc.old)
			}
			if err := mem.WriteFile(p, bytes.Replace(b, []byte(tc.old), []byte(tc.new), 1)); err != nil {
				t.Fatal(err)
			}
			var problems []string
			r, err := render(mem, tc.kustomization)
			if err != nil {
				problems = []string{err.Error()}
			} else {
				problems = check(r, known)
			}
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("got problems %q, want one that says %q", problems, tc.want)
		})
	}
}

// check returns what is wrong with a rendered kustomization.
func check(r *rendered, known map[string]bool) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if len(r.deployments) != 1 {
		bad("%d Deployments, want 1", len(r.deployments))
		return out
	}
	d := r.deployments[0]
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)
	selects := func(sel map[string]string) bool {
		return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(podLabels)
	}
	if !selects(d.Spec.Selector.MatchLabels) {
		bad("Deployment %s: its selector does not match its pods", d.Name)
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		bad("enableServiceLinks must be false: a Service named data-api adds DATA_API_* variables the service reads as settings")
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		bad("automountServiceAccountToken must be false: the service never calls the Kubernetes API")
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 10001 ||
		psc.FSGroup == nil || *psc.FSGroup != 10001 {
		bad("the pod must run as non-root uid 10001 with fsGroup 10001 (the image's user)")
	}
	if len(pod.Spec.Containers) != 1 {
		bad("%d containers, want 1", len(pod.Spec.Containers))
		return out
	}
	c := pod.Spec.Containers[0]

	// Image: a tag, never latest.
	if _, tag, ok := strings.Cut(path.Base(c.Image), ":"); !ok || tag == "" || tag == "latest" {
		bad("image %q: name a tag other than latest", c.Image)
	}

	// Probes on the container's own port.
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
		ports[fmt.Sprint(p.ContainerPort)] = true
	}
	probe := func(what string, p *corev1.Probe, want string) {
		switch {
		case p == nil || p.HTTPGet == nil:
			bad("no %s probe", what)
		case p.HTTPGet.Path != want:
			bad("%s probe on %s, want %s", what, p.HTTPGet.Path, want)
		case !ports[p.HTTPGet.Port.String()]:
			bad("%s probe on port %s, which the container does not open", what, p.HTTPGet.Port.String())
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")

	// Container hardening.
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("readOnlyRootFilesystem must be true")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("allowPrivilegeEscalation must be false")
	}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		bad("capabilities must drop ALL and add none")
	}

	// Environment: known settings only, each once, each value from one place,
	// every secret reference resolved.
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			bad("env %s set twice", e.Name)
		}
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.Value != "" {
			bad("env %s has both value and valueFrom", e.Name)
		}
		if strings.HasPrefix(e.Name, "DATA_API_") && !known[e.Name] {
			bad("env %s is not a setting of config/data-api.yaml: the service would ignore it", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			if !secretHas(r.secrets, ref.Name, ref.Key) {
				bad("env %s: secret %q has no key %q", e.Name, ref.Name, ref.Key)
			}
		}
	}

	// Memory: limits and requests set, the pending caps explicit, GOMEMLIMIT
	// under the limit with room for what is not Go heap.
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			bad("no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			bad("no %s limit", res)
		}
	}
	if _, ok := env["DATA_API_DIALOGUES_MAX_PENDING_BYTES"]; !ok {
		bad("DATA_API_DIALOGUES_MAX_PENDING_BYTES must be set: the memory limit is sized from it")
	}
	if limit, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		gml, err := resource.ParseQuantity(strings.TrimSuffix(env["GOMEMLIMIT"], "B"))
		switch {
		case err != nil:
			bad("GOMEMLIMIT %q: %v", env["GOMEMLIMIT"], err)
		case gml.Value() >= limit.Value()*95/100 || gml.Value() < limit.Value()*70/100:
			bad("GOMEMLIMIT %s should be 70-95%% of the memory limit %s", env["GOMEMLIMIT"], limit.String())
		}
	}

	// Termination: drain, then grace, then the database closes.
	drain, err1 := time.ParseDuration(env["DATA_API_SERVER_DRAIN_DELAY"])
	grace, err2 := time.ParseDuration(env["DATA_API_SERVER_SHUTDOWN_GRACE"])
	if err1 != nil || err2 != nil || drain <= 0 {
		bad("set DATA_API_SERVER_DRAIN_DELAY (> 0) and DATA_API_SERVER_SHUTDOWN_GRACE: %v %v", err1, err2)
	} else if tgp := pod.Spec.TerminationGracePeriodSeconds; tgp == nil || time.Duration(*tgp)*time.Second < drain+grace+5*time.Second {
		bad("terminationGracePeriodSeconds %v, want at least drain %v + grace %v + 5s", deref(tgp), drain, grace)
	}

	// Volumes: every mount backed, every claim present.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			bad("volumeMount %s: no such volume", m.Name)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if pvc := v.PersistentVolumeClaim; pvc != nil && !slices.ContainsFunc(r.claims, func(c *corev1.PersistentVolumeClaim) bool { return c.Name == pvc.ClaimName }) {
			bad("volume %s: no PersistentVolumeClaim %s", v.Name, pvc.ClaimName)
		}
	}

	// Replicas: one on SQLite, never two at once; several need a budget and
	// a spread over zones.
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}

	// The deletion journal: on a claim of its own, which outlives the
	// database's volume and which every replica shares.
	mountOf := func(p string) *corev1.VolumeMount {
		var best *corev1.VolumeMount
		for i, m := range c.VolumeMounts {
			if (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
				best = &c.VolumeMounts[i]
			}
		}
		return best
	}
	switch jdir, jm := env["DATA_API_JOURNAL_DIR"], mountOf(env["DATA_API_JOURNAL_DIR"]); {
	case jdir == "":
		bad("DATA_API_JOURNAL_DIR must name the deletion journal's directory: without it a restored backup brings back what was erased since")
	case jm == nil || vols[jm.Name].PersistentVolumeClaim == nil:
		bad("DATA_API_JOURNAL_DIR %s is on no PersistentVolumeClaim: the journal would die with the pod", jdir)
	case env["DATA_API_DATABASE_DRIVER"] != "postgres" && mountOf(env["DATA_API_DATABASE_DSN"]) != nil && mountOf(env["DATA_API_DATABASE_DSN"]).Name == jm.Name:
		bad("the deletion journal %s shares the database's volume %s: it must outlive the database's loss", jdir, jm.Name)
	default:
		claim := vols[jm.Name].PersistentVolumeClaim.ClaimName
		i := slices.IndexFunc(r.claims, func(c *corev1.PersistentVolumeClaim) bool { return c.Name == claim })
		if replicas > 1 && i >= 0 && !slices.Contains(r.claims[i].Spec.AccessModes, corev1.ReadWriteMany) {
			bad("the deletion journal's claim %s must be ReadWriteMany: %d replicas share it", claim, replicas)
		}
	}
	if driver := env["DATA_API_DATABASE_DRIVER"]; driver == "" || driver == "sqlite" {
		if replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			bad("on SQLite: %d replicas with strategy %q, want 1 with Recreate", replicas, d.Spec.Strategy.Type)
		}
	} else {
		if replicas < 2 {
			bad("on %s: %d replicas, want 2 or more", driver, replicas)
		}
		if env["DATA_API_DIALOGUES_STORE"] != "redis" {
			bad("several replicas need DATA_API_DIALOGUES_STORE=redis")
		}
		if !slices.ContainsFunc(r.budgets, func(b *policyv1.PodDisruptionBudget) bool {
			return b.Spec.Selector != nil && selects(b.Spec.Selector.MatchLabels)
		}) {
			bad("no PodDisruptionBudget selects the pods")
		}
		if !slices.ContainsFunc(pod.Spec.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool {
			return c.TopologyKey == "topology.kubernetes.io/zone" && c.LabelSelector != nil && selects(c.LabelSelector.MatchLabels)
		}) {
			bad("no topology spread across zones")
		}
	}

	// Services and policies point at these pods.
	for _, s := range r.services {
		if !selects(s.Spec.Selector) {
			bad("Service %s selects no pod of the Deployment", s.Name)
		}
		for _, p := range s.Spec.Ports {
			if !ports[p.TargetPort.String()] {
				bad("Service %s: targetPort %s is not a container port", s.Name, p.TargetPort.String())
			}
		}
	}
	if !slices.ContainsFunc(r.policies, func(p *networkingv1.NetworkPolicy) bool {
		return selects(p.Spec.PodSelector.MatchLabels) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}) {
		bad("no NetworkPolicy restricts the pods' ingress")
	}

	// Secrets hold only what the operator's files gave: here, placeholders.
	for _, s := range r.secrets {
		for k, v := range s.Data {
			if string(v) != placeholder(k) {
				bad("secret %s key %s holds a committed value", s.Name, k)
			}
		}
		if len(s.StringData) > 0 {
			bad("secret %s: stringData in a manifest is a committed secret", s.Name)
		}
	}
	return out
}

func secretHas(secrets []*corev1.Secret, name, key string) bool {
	for _, s := range secrets {
		if s.Name == name {
			_, ok := s.Data[key]
			return ok
		}
	}
	return false
}

func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// configEnv returns the environment variable of every setting in the
// service's configuration file.
func configEnv(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "data-api.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			name := prefix + "_" + strings.ToUpper(k)
			if sub, ok := v.(map[string]any); ok {
				walk(name, sub)
			} else {
				known[name] = true
			}
		}
	}
	walk("DATA_API", tree)
	return known
}
