// Pins the modules whose CRDs scripts/cluster installs (Gateway API, KEDA). Nothing is
// built from it: `go mod download -json` gives each module's folder, checked against go.sum.
module modelfleet.dev/controlplane/crds

go 1.26.0

require (
	github.com/kedacore/keda/v2 v2.20.2
	sigs.k8s.io/gateway-api v1.6.3
)
