// pulumi-language-python for the pinned toolchain: the language host the Pulumi CLI starts to run a Python
// program or a Python policy pack.
//
// The official host lives in its own Go module, which the module proxy does not serve, so `make toolchain`
// builds this one from the SDK's published packages when no official binary is at hand. It speaks the same
// protocol and runs the SDK's own executor (`pulumi-language-python-exec`, installed next to this binary) in
// the project's virtualenv, with the same arguments and environment as the official host; what it leaves out
// is what this project never asks of a host: code generation, templates, packing, debuggers and typecheckers.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	executorName = "pulumi-language-python-exec"
	// The executor exits with this code after it has shown the user an error of its own.
	exitAfterUserMessage = 32
)

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.String("tracing", "", "accepted for compatibility; tracing is not forwarded")
	executor := flag.String("use-executor", "", "run this executor instead of the one next to this binary")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	if *executor == "" {
		self, err := os.Executable()
		if err != nil {
			fail(err)
		}
		*executor = filepath.Join(filepath.Dir(self), executorName)
		if _, err := os.Stat(*executor); err != nil {
			fail(fmt.Errorf("missing executor %s: %w", *executor, err))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	cancel := make(chan bool)
	go func() { <-ctx.Done(); stop(); close(cancel) }()

	host := &pythonHost{executor: *executor}
	if args := flag.Args(); len(args) > 0 {
		host.engineAddress = args[0]
		if err := rpcutil.Healthcheck(ctx, host.engineAddress, 5*time.Minute, stop); err != nil {
			fail(fmt.Errorf("could not start the engine health check: %w", err))
		}
	}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fail(fmt.Errorf("could not start the language host: %w", err))
	}
	// The CLI reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

type pythonHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	executor      string
	engineAddress string
}

func (h *pythonHost) Handshake(ctx context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.engineAddress = req.EngineAddress
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *pythonHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// pythonToolchain resolves the project's toolchain (pip, poetry or uv) and virtualenv from Pulumi.yaml's options.
func pythonToolchain(info *pulumirpc.ProgramInfo, forPlugin bool) (toolchain.Toolchain, error) {
	opts := toolchain.PythonOptions{Root: info.RootDirectory, ProgramDir: info.ProgramDirectory}
	options := info.Options.AsMap()
	if venv, ok := options["virtualenv"].(string); ok {
		opts.Virtualenv = venv
	}
	switch options["toolchain"] {
	case "poetry":
		opts.Toolchain = toolchain.Poetry
	case "uv":
		opts.Toolchain = toolchain.Uv
	case "pip":
		opts.Toolchain = toolchain.Pip
	}
	if forPlugin && opts.Virtualenv == "" && (opts.Toolchain == toolchain.Pip || opts.Toolchain == toolchain.Auto) {
		opts.Virtualenv = "venv"
	}
	return toolchain.ResolveToolchain(opts)
}

// listPluginPackages prints, as JSON, every installed distribution that carries a pulumi-plugin.json.
const listPluginPackages = `
import importlib.metadata as md, json
found = []
for dist in md.distributions():
    for file in dist.files or []:
        if file.name == "pulumi-plugin.json" and len(file.parts) == 2:
            found.append({"package": dist.metadata["Name"], "version": dist.version,
                          "plugin": json.loads(file.read_text())})
print(json.dumps(found))
`

// GetRequiredPackages names the resource plugins of the Pulumi packages installed in the program's
// virtualenv, so the CLI can say up front which plugin is missing.
func (h *pythonHost) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	tc, err := pythonToolchain(req.Info, false)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}
	cmd, err := tc.Command(ctx, "-c", listPluginPackages)
	if err != nil {
		return nil, err
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the Pulumi packages in the virtualenv: %w", err)
	}
	var found []struct {
		Package string `json:"package"`
		Version string `json:"version"`
		Plugin  struct {
			Resource bool   `json:"resource"`
			Name     string `json:"name"`
			Version  string `json:"version"`
			Server   string `json:"server"`
		} `json:"plugin"`
	}
	if err := json.Unmarshal(out, &found); err != nil {
		return nil, err
	}
	var packages []*pulumirpc.PackageDependency
	for _, f := range found {
		if !f.Plugin.Resource {
			continue
		}
		name := f.Plugin.Name
		if name == "" {
			name = strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(f.Package), "pulumi_"), "pulumi-")
		}
		pluginVersion := f.Plugin.Version
		if pluginVersion == "" {
			pluginVersion = f.Version
		}
		packages = append(packages, &pulumirpc.PackageDependency{
			Name: name, Kind: string(apitype.ResourcePlugin), Version: "v" + strings.TrimPrefix(pluginVersion, "v"),
			Server: f.Plugin.Server,
		})
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: packages}, nil
}

// Run executes the program through the SDK's executor, as the official host does.
func (h *pythonHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	tc, err := pythonToolchain(req.Info, false)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}
	args := []string{h.executor}
	flagIfSet := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	flagIfSet("monitor", req.GetMonitorAddress())
	flagIfSet("engine", h.engineAddress)
	flagIfSet("project", req.GetProject())
	flagIfSet("root_directory", req.GetInfo().GetRootDirectory())
	flagIfSet("stack", req.GetStack())
	flagIfSet("pwd", req.GetPwd())
	flagIfSet("dry_run", strconv.FormatBool(req.GetDryRun()))
	flagIfSet("parallel", strconv.Itoa(int(req.GetParallel())))
	flagIfSet("organization", req.GetOrganization())
	args = append(append(args, req.Info.EntryPoint), req.GetArgs()...)

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	// Like the official host, set PULUMI_CONFIG only when the stack has configuration: the SDK reads a JSON object.
	if req.GetConfig() != nil {
		config, err := json.Marshal(req.GetConfig())
		if err != nil {
			return nil, err
		}
		cmd.Env = append(cmd.Env, "PULUMI_CONFIG="+string(config))
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON))
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second

	if err := cmd.Run(); err != nil {
		// Flush what Python wrote before it died, so the CLI shows the program's own error.
		_ = os.Stdout.Sync()
		_ = os.Stderr.Sync()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.ExitStatus() == exitAfterUserMessage {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d", exitErr.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run the Python executor: %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// RunPlugin starts a Python plugin; for a policy pack (kind analyzer) that is `python -u -m pulumi.policy`
// in the pack's own virtualenv, behind the SDK's policy proxy, which hands the pack the stack's configuration.
func (h *pythonHost) RunPlugin(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	ctx := server.Context()
	isPolicyPack := req.Kind == string(apitype.AnalyzerPlugin)
	tc, err := pythonToolchain(req.Info, !isPolicyPack)
	if err != nil {
		return err
	}
	// Fail now, with the reason, rather than leave the engine waiting for a plugin that cannot start.
	if err := tc.ValidateVenv(ctx); err != nil {
		return fmt.Errorf("the plugin in %s has no usable virtualenv: %w", req.Info.ProgramDirectory, err)
	}
	var args []string
	if isPolicyPack {
		args = append(append([]string{"-u", "-m", "pulumi.policy"}, req.Args...), req.Info.ProgramDirectory)
	} else {
		args = append([]string{req.Info.ProgramDirectory}, req.Args...)
	}
	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()
	cmd.Dir = req.Pwd
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}

	var proxy *sdk.PolicyProxy
	if isPolicyPack {
		cmd.Dir = req.Info.ProgramDirectory
		if proxy, stdout, err = sdk.NewPolicyProxy(ctx, stdout); err != nil {
			return fmt.Errorf("could not start the policy pack proxy: %w", err)
		}
		stack, err := proxy.AwaitConfiguration(ctx)
		if err != nil {
			return fmt.Errorf("could not get the stack configuration: %w", err)
		}
		if stack != nil {
			config, err := json.Marshal(stack.Config)
			if err != nil {
				return err
			}
			cmd.Env = append(cmd.Env, "PULUMI_ORGANIZATION="+stack.Organization, "PULUMI_PROJECT="+stack.Project,
				"PULUMI_STACK="+stack.Stack, "PULUMI_DRY_RUN="+strconv.FormatBool(stack.DryRun), "PULUMI_CONFIG="+string(config))
		}
	}
	cmd.Env = append(cmd.Env, req.Env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr

	if err := cmd.Start(); err != nil {
		return fmt.Errorf("could not run the plugin: %w", err)
	}
	if proxy != nil {
		return proxy.Attach(ctx, cmd)
	}
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return server.Send(&pulumirpc.RunPluginResponse{
				Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(exitErr.ExitCode())}, //nolint:gosec // exit codes fit
			})
		}
		return err
	}
	return closer.Close()
}

// InstallDependencies backs `pulumi install`: the project's toolchain creates the virtualenv and installs into it.
func (h *pythonHost) InstallDependencies(req *pulumirpc.InstallDependenciesRequest, server pulumirpc.LanguageRuntime_InstallDependenciesServer) error {
	tc, err := pythonToolchain(req.Info, req.IsPlugin)
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(server, req.IsTerminal)
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := tc.InstallDependencies(server.Context(), req.Info.ProgramDirectory, req.UseLanguageVersionTools, true, stdout, stderr); err != nil {
		return err
	}
	return closer.Close()
}

// GetProgramDependencies backs `pulumi about`.
func (h *pythonHost) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, err := pythonToolchain(req.Info, false)
	if err != nil {
		return nil, err
	}
	installed, err := tc.ListPackages(ctx, req.TransitiveDependencies)
	if err != nil {
		return nil, err
	}
	response := &pulumirpc.GetProgramDependenciesResponse{}
	for _, dep := range installed {
		response.Dependencies = append(response.Dependencies, &pulumirpc.DependencyInfo{Name: dep.Name, Version: dep.Version})
	}
	return response, nil
}
