// podresources serves the kubelet PodResources gRPC API (v1 and v1alpha1) on a unix socket with the kubelet's own
// server code (k8s.io/kubernetes/pkg/kubelet/apis/podresources), fed from a JSON file instead of the kubelet's
// device manager. Tests use it to exercise danm's PodResources client against the real protocol.
//
//	podresources -socket /run/x/kubelet.sock -pods pods.json [-feature-gates KubeletPodResourcesGet=false]
//	             [-qps 100 -burst 10]   (the kubelet's rate limit; its defaults)
//
// pods.json: {"pods":[{"namespace":"ns","name":"p","uid":"u","containers":[{"name":"c",
// "devices":[{"resourceName":"nokia.k8s.io/sriov_ens1f0","deviceIds":["0000:81:10.1"]}]}]}]}
// The file is read again on every call, so a test can change the node's pods while the server runs.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
	podresourcesv1alpha1 "k8s.io/kubelet/pkg/apis/podresources/v1alpha1"
	apisgrpc "k8s.io/kubernetes/pkg/kubelet/apis/grpc"
	"k8s.io/kubernetes/pkg/kubelet/apis/podresources"
)

type device struct {
	ResourceName string   `json:"resourceName"`
	DeviceIDs    []string `json:"deviceIds"`
}

type container struct {
	Name    string   `json:"name"`
	Devices []device `json:"devices"`
}

type pod struct {
	Namespace  string      `json:"namespace"`
	Name       string      `json:"name"`
	UID        string      `json:"uid"`
	Containers []container `json:"containers"`
}

type node struct {
	path string
}

func (n node) read() []pod {
	var f struct {
		Pods []pod `json:"pods"`
	}
	b, err := os.ReadFile(n.path)
	if err != nil {
		log.Printf("read %s: %v", n.path, err)
		return nil
	}
	if err := json.Unmarshal(b, &f); err != nil {
		log.Printf("decode %s: %v", n.path, err)
		return nil
	}
	return f.Pods
}

func (n node) GetActivePods() []*v1.Pod { return n.GetPods() }

func (n node) GetPods() []*v1.Pod {
	var out []*v1.Pod
	for _, p := range n.read() {
		k := &v1.Pod{}
		k.Namespace, k.Name, k.UID = p.Namespace, p.Name, types.UID(p.UID)
		for _, c := range p.Containers {
			k.Spec.Containers = append(k.Spec.Containers, v1.Container{Name: c.Name})
		}
		out = append(out, k)
	}
	return out
}

func (n node) GetPodByName(namespace, name string) (*v1.Pod, bool) {
	for _, p := range n.GetPods() {
		if p.Namespace == namespace && p.Name == name {
			return p, true
		}
	}
	return nil, false
}

func (n node) UpdateAllocatedDevices() {}

func (n node) GetDevices(podUID, containerName string) []*podresourcesv1.ContainerDevices {
	var out []*podresourcesv1.ContainerDevices
	for _, p := range n.read() {
		if p.UID != podUID {
			continue
		}
		for _, c := range p.Containers {
			if c.Name != containerName {
				continue
			}
			for _, d := range c.Devices {
				out = append(out, &podresourcesv1.ContainerDevices{ResourceName: d.ResourceName, DeviceIds: d.DeviceIDs})
			}
		}
	}
	return out
}

func (n node) GetAllocatableDevices() []*podresourcesv1.ContainerDevices { return nil }
func (n node) GetCPUs(string, string) []int64                            { return nil }
func (n node) GetAllocatableCPUs() []int64                               { return nil }
func (n node) GetMemory(string, string) []*podresourcesv1.ContainerMemory {
	return nil
}
func (n node) GetAllocatableMemory() []*podresourcesv1.ContainerMemory { return nil }
func (n node) GetDynamicResources(*v1.Pod, *v1.Container) []*podresourcesv1.DynamicResource {
	return nil
}

func main() {
	socket := flag.String("socket", "", "unix socket to serve on")
	pods := flag.String("pods", "", "JSON file with the node's pods and their devices")
	gates := flag.String("feature-gates", "", "kubelet feature gates, e.g. KubeletPodResourcesGet=false (a kubelet before 1.34)")
	qps := flag.Int("qps", podresources.DefaultQPS, "the kubelet's rate limit for the API")
	burst := flag.Int("burst", podresources.DefaultBurstTokens, "the kubelet's burst for the API")
	flag.Parse()
	if *gates != "" {
		if err := utilfeature.DefaultMutableFeatureGate.Set(*gates); err != nil {
			log.Fatal(err)
		}
	}
	if *socket == "" || *pods == "" {
		log.Fatal("usage: podresources -socket PATH -pods FILE")
	}
	n := node{path: *pods}
	providers := podresources.PodResourcesProviders{Pods: n, Devices: n, Cpus: n, Memory: n, DynamicResources: n}
	_ = os.Remove(*socket)
	l, err := net.Listen("unix", *socket)
	if err != nil {
		log.Fatal(err)
	}
	// As the kubelet serves it (pkg/kubelet/server.ListenAndServePodResources): rate-limited.
	server := grpc.NewServer(apisgrpc.WithRateLimiter(context.Background(), "podresources", int32(*qps), int32(*burst)))
	podresourcesv1alpha1.RegisterPodResourcesListerServer(server, podresources.NewV1alpha1PodResourcesServer(providers))
	podresourcesv1.RegisterPodResourcesListerServer(server, podresources.NewV1PodResourcesServer(context.Background(), providers))
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		server.Stop()
	}()
	log.Printf("serving PodResources on %s", *socket)
	if err := server.Serve(l); err != nil {
		log.Fatal(err)
	}
}
