using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Shepherd.Cli.Commands;
using Shepherd.Engine.Configuration;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Server;
using Shepherd.Server.Configuration;

namespace Shepherd.Cli.Running;

/// <summary>
/// <c>shepherd serve</c>: the server with the engine inside, until a signal stops it. Every
/// batch left unfinished by an earlier run resumes on start.
/// </summary>
internal sealed class ServerRun(ServeSettings settings, TextWriter stdout, TimeProvider time)
{
    public const string DefaultStatePath = "shepherd.db";

    public async Task<int> ExecuteAsync(CancellationToken cancellationToken)
    {
        var config = settings.ConfigPath is { } configPath ? ConfigFile.Load(configPath) : null;
        var options = ServerOptions(config?.Server);
        var store = settings.Store ?? config?.Store ?? config?.Server?.State ?? DefaultStatePath;
        var shared = PostgresStoreOptions.Names(store) ? SharedStore(store, config?.Cluster, options.Urls) : null;
        var statePath = shared is null ? Path.GetFullPath(store) : null;
        using var stateLock = statePath is null ? null : StateLock.Acquire(statePath);
        var upstreams = EngineSetup.ChooseUpstreams(settings, config, anthropicInput: false, endpoint: null);
        var engine = EngineSetup.Options(settings, config, statePath, upstreams.Upstreams, shared);
        var stateExisted = statePath is not null && File.Exists(statePath);
        await using var server = await Listening.StartAsync(string.Join(", ", options.Urls), "--urls", () => ShepherdServer.StartAsync(options, engine, (builder, http) =>
        {
            builder.Services.AddSingleton(time);
            builder.Logging.ClearProviders();
            builder.Logging.SetMinimumLevel(settings.Verbose ? LogLevel.Debug : LogLevel.Information);
            builder.Logging.AddSimpleConsole(console => console.SingleLine = true);
            // Logs go to stderr; stdout holds only what the server says about itself.
            builder.Services.Configure<ConsoleLoggerOptions>(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
            EngineSetup.UseSimulatorIfChosen(settings, http, time);
        }, cancellationToken), () =>
        {
            // A server that could not start leaves nothing behind where it found nothing.
            if (statePath is not null && !stateExisted)
            {
                StateFiles.Delete(statePath);
            }
        });

        var keys = options.GatewayKeys.Count == 0 ? "no gateway keys: anyone who can reach it may use it" : $"{options.GatewayKeys.Count} gateway key(s)";
        await stdout.WriteLineAsync($"Shepherd listening on {string.Join(", ", server.Urls.Select(u => u.ToString().TrimEnd('/')))}");
        var where = shared is null
            ? $"state {ShownPath.Of(statePath!)}"
            : $"store {PostgresStoreOptions.Redacted(shared.ConnectionString)} as node {shared.NodeName}";
        await stdout.WriteLineAsync($"  {where}, upstream {upstreams.Description}, {keys}");
        await stdout.FlushAsync(cancellationToken);
        try
        {
            await server.WaitForShutdownAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped by a signal: a normal end for a server.
        }

        await server.StopAsync(CancellationToken.None);
        return ExitCodes.Success;
    }

    /// <summary>The shared store, with this node's name: the flag's, the configuration's, or the machine's name and the port it listens on.</summary>
    private PostgresStoreOptions SharedStore(string connectionString, ClusterConfig? cluster, IReadOnlyList<string> urls)
    {
        var port = urls.Select(url => Uri.TryCreate(url.Replace("*", "localhost", StringComparison.Ordinal).Replace("+", "localhost", StringComparison.Ordinal), UriKind.Absolute, out var uri) ? uri.Port : 0).FirstOrDefault();
        var shared = new PostgresStoreOptions
        {
            ConnectionString = connectionString,
            NodeName = settings.Node ?? cluster?.Node ?? (port > 0 ? $"{Environment.MachineName}:{port}" : $"{Environment.MachineName}-{Environment.ProcessId}"),
        };
        if (cluster?.NodeTimeoutSeconds is { } timeout)
        {
            shared.NodeTimeout = TimeSpan.FromSeconds(timeout);
        }

        try
        {
            return shared.Validated();
        }
        catch (ArgumentException ex)
        {
            throw new UsageException($"--store: {ex.Message.Split(" (Parameter", 2)[0]}");
        }
    }

    /// <summary>A gateway key of the configuration file: by the key or its SHA-256, with its scopes and limits.</summary>
    private static GatewayKey FromConfig(GatewayKeyConfig key) =>
        (key.Sha256 is { } sha256 ? new GatewayKey(sha256, key.Name) : new GatewayKey(new Secret(key.ReadKey()!), key.Name)) with
        {
            Scopes = key.Scopes is { } scopes
                ? scopes.Aggregate(KeyScopes.None, (all, scope) => all | scope switch { "read" => KeyScopes.Read, "submit" => KeyScopes.Submit, _ => KeyScopes.Admin })
                : KeyScopes.Read | KeyScopes.Submit,
            Limits = key.Limits is { } limits ? new TenantLimits(limits.RequestsPerMinute, limits.OpenBatches, limits.QueuedItems, limits.MaxFileBytes, limits.DailyBudgetUsd) : TenantLimits.None,
        };

    private ServerOptions ServerOptions(ServerConfig? config)
    {
        var defaults = new ServerOptions();
        var keys = settings.GatewayKeys.Select(k => new GatewayKey(new Secret(k)))
            .Concat((config?.GatewayKeys ?? []).Select(FromConfig))
            .ToList();
        var options = new ServerOptions
        {
            Urls = settings.Urls ?? config?.Urls ?? defaults.Urls,
            GatewayKeys = keys,
            MaxUploadBytes = config?.MaxUploadBytes ?? defaults.MaxUploadBytes,
            MaxFileRequests = config?.MaxFileRequests ?? defaults.MaxFileRequests,
            MaxCreateBodyBytes = config?.MaxCreateBodyBytes ?? defaults.MaxCreateBodyBytes,
            MaxCreateRequests = config?.MaxCreateRequests ?? defaults.MaxCreateRequests,
            OtlpEndpoint = settings.OtlpEndpoint ?? config?.OtlpEndpoint,
            DefaultModes = config?.Modes?.ToModes() ?? new Dictionary<BatchDoor, BatchMode>(),
            AnswerCache = config?.Cache?.ToOptions(),
        };
        config?.Gateway?.ApplyTo(options);
        try
        {
            options.Validated();
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ex.Message.Split(" (Parameter", 2)[0]);
        }

        return options;
    }
}
