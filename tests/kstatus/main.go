// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the library
// Flux and Helm 4's --wait read health with) computes for Kubernetes objects, so the tests can ask
// the real library rather than a copy of its rules.
//
// It reads one JSON document from stdin: an object, or a List of objects (`kubectl get -o json`),
// and writes one JSON line per object, in order:
//
//	{"name": "...", "status": "InProgress|Current|Failed|Terminating|...", "message": "..."}
//
// Build: `make kstatus-bin` (cached under .cache/kstatus-bin/<cli-utils version>/).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	doc := &unstructured.Unstructured{}
	if err := doc.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("reading the object (or List) on stdin: %w", err)
	}
	objects := []*unstructured.Unstructured{doc}
	if doc.IsList() {
		objects = nil
		err := doc.EachListItem(func(item runtime.Object) error {
			objects = append(objects, item.(*unstructured.Unstructured))
			return nil
		})
		if err != nil {
			return err
		}
	}
	enc := json.NewEncoder(out)
	for _, obj := range objects {
		result, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
		}
		if err := enc.Encode(line{obj.GetName(), result.Status.String(), result.Message}); err != nil {
			return err
		}
	}
	return nil
}
