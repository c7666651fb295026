using Microsoft.Extensions.DependencyInjection;
using Shepherd.Cli.Commands;
using Shepherd.Engine;
using Shepherd.Engine.Configuration;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Native;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;

namespace Shepherd.Cli.Running;

/// <summary>Turns what <c>run</c> and <c>serve</c> were told into the engine's upstreams and options.</summary>
internal static class EngineSetup
{
    private static readonly Uri SimulatorBaseUrl = new("http://simulated-provider/v1");

    /// <summary>
    /// The upstreams requests go to, and a description of them for the user; decided before the
    /// engine is built, which sizes its connection pool by them. Without <c>--provider</c>,
    /// Anthropic input goes to Anthropic and everything else to OpenAI.
    /// </summary>
    public static ChosenUpstreams ChooseUpstreams(EngineSettings settings, ShepherdConfig? config, bool anthropicInput, string? endpoint)
    {
        if (config is { Upstreams.Count: > 0 })
        {
            if (settings.BaseUrl is not null || settings.Upstreams.Count > 0 || settings.Provider != ProviderChoice.Auto)
            {
                throw new UsageException("The configuration file names the upstreams; leave out --provider, --base-url and --upstream, or the file's upstreams.");
            }

            List<UpstreamOptions> configured = [.. config.Upstreams.Select(u => Tuned(settings, u.ToOptions()))];
            return new(configured, string.Join(", ", configured.Select(u => u.Name ?? u.BaseUrl?.Authority ?? u.Kind.ToString())));
        }

        var choice = settings.Provider == ProviderChoice.Auto
            ? anthropicInput ? ProviderChoice.Anthropic : ProviderChoice.OpenAI
            : settings.Provider;
        if (choice == ProviderChoice.Anthropic && endpoint is not null && endpoint != BatchEndpoints.Messages)
        {
            throw new UsageException($"The anthropic provider serves {BatchEndpoints.Messages}, but this batch's url is {endpoint}. Use --provider openai for an OpenAI-compatible server.");
        }

        var kind = choice == ProviderChoice.Anthropic || (choice == ProviderChoice.Sim && anthropicInput) ? UpstreamKind.Anthropic : UpstreamKind.OpenAI;
        if (choice == ProviderChoice.Sim)
        {
            // The simulator serves both batch APIs, and OpenAI's flex tier, as the providers it stands for do.
            var simulated = new UpstreamOptions { Name = "sim", Kind = kind, BaseUrl = SimulatorBaseUrl, BatchApi = true, Flex = kind == UpstreamKind.OpenAI };
            return new([Tuned(settings, simulated)], "the simulated provider");
        }

        var variable = kind == UpstreamKind.Anthropic ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY";
        var key = settings.ApiKey ?? Environment.GetEnvironmentVariable(variable);
        var targets = settings.Upstreams.Count > 0
            ? settings.Upstreams
            : [new UpstreamTarget(settings.BaseUrl ?? (kind == UpstreamKind.Anthropic ? UpstreamOptions.AnthropicDefaultBaseUrl : UpstreamOptions.OpenAIDefaultBaseUrl), 1)];
        if (string.IsNullOrEmpty(key) && settings.BaseUrl is null && settings.Upstreams.Count == 0)
        {
            throw new UsageException($"No API key for {(kind == UpstreamKind.Anthropic ? "Anthropic" : "OpenAI")}: pass --api-key or set {variable}. (A local server given with --base-url may need none.)");
        }

        List<UpstreamOptions> upstreams = [.. targets.Select(target => Tuned(settings, new UpstreamOptions
        {
            Kind = kind,
            BaseUrl = target.BaseUrl,
            Weight = target.Weight,
            ApiKey = string.IsNullOrEmpty(key) ? null : new Secret(key),
        }))];
        return new(upstreams, string.Join(", ", targets.Select(t => t.BaseUrl.GetLeftPart(UriPartial.Authority))));
    }

    /// <summary>The engine's options: the store at <paramref name="statePath"/> or the <paramref name="shared"/> one, the upstreams, the configuration's prices, and dispatch as the flags say.</summary>
    public static ShepherdEngineOptions Options(EngineSettings settings, ShepherdConfig? config, string? statePath, IReadOnlyList<UpstreamOptions> upstreams, PostgresStoreOptions? shared = null) => new()
    {
        Store = statePath is null ? null : new SqliteStoreOptions { Path = statePath },
        SharedStore = shared,
        Upstreams = upstreams,
        Prices = config?.PriceTable() ?? PriceTable.BuiltIn,
        Native = NativeOptions(settings, config),
        Dispatch = new DispatchOptions
        {
            Concurrency = settings.Concurrency,
            MaxAttempts = settings.MaxAttempts,
            LeaseDuration = settings.RequestTimeout + TimeSpan.FromMinutes(5),
        },
    };

    /// <summary>
    /// How native jobs are watched: as the configuration says; the simulator, which ends a job in
    /// moments rather than hours, is looked at every second and given 5 seconds to cancel one.
    /// </summary>
    private static NativeBatchOptions NativeOptions(EngineSettings settings, ShepherdConfig? config)
    {
        var options = config?.Native?.ToOptions() ?? new();
        if (settings.Provider == ProviderChoice.Sim)
        {
            options.PollInterval = config?.Native?.PollSeconds is null ? TimeSpan.FromSeconds(1) : options.PollInterval;
            options.CancelGrace = TimeSpan.FromSeconds(5);
        }

        return options;
    }

    /// <summary>With <c>--provider sim</c>, requests are answered in-process by the simulated provider.</summary>
    public static void UseSimulatorIfChosen(EngineSettings settings, IHttpClientBuilder http, TimeProvider time)
    {
        if (settings.Provider == ProviderChoice.Sim)
        {
            var simulator = new SimulatedProvider(settings.Simulator, time, new Random(settings.SimulatorSeed));
            http.ConfigurePrimaryHttpMessageHandler(() => new SimulatorHandler(simulator));
        }
    }

    /// <summary>The command line's timeout, version and limits, on top of what the upstream already says.</summary>
    private static UpstreamOptions Tuned(EngineSettings settings, UpstreamOptions upstream)
    {
        upstream.RequestTimeout = settings.RequestTimeout;
        upstream.AnthropicVersion = settings.AnthropicVersion;
        upstream.Limits = new LaneLimits
        {
            RequestsPerMinute = settings.RequestsPerMinute,
            TokensPerMinute = settings.TokensPerMinute,
            InputTokensPerMinute = settings.InputTokensPerMinute,
            OutputTokensPerMinute = settings.OutputTokensPerMinute,
        }.Over(upstream.Limits);
        return upstream;
    }
}

/// <summary>The upstreams a command sends to, and how they are named to the user.</summary>
/// <param name="Upstreams">The upstreams, tuned by the command line.</param>
/// <param name="Description">Their names or hosts, for the lines a command prints.</param>
internal sealed record ChosenUpstreams(IReadOnlyList<UpstreamOptions> Upstreams, string Description);
