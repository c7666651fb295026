using Shepherd.Engine.Model;
using Shepherd.Simulator;

namespace Shepherd.Cli.Running;

/// <summary>Which upstream <c>run</c> sends to.</summary>
internal enum ProviderChoice
{
    /// <summary>Anthropic for Anthropic input or <c>/v1/messages</c>, otherwise OpenAI.</summary>
    Auto,

    /// <summary>The built-in simulated provider, in-process.</summary>
    Sim,

    /// <summary>OpenAI or any OpenAI-compatible server.</summary>
    OpenAI,

    /// <summary>Anthropic.</summary>
    Anthropic,
}

/// <summary>How progress is shown.</summary>
internal enum ProgressMode
{
    /// <summary>A live bar on a terminal, plain lines otherwise.</summary>
    Auto,

    /// <summary>A live bar.</summary>
    Live,

    /// <summary>A plain line every few seconds.</summary>
    Plain,

    /// <summary>Nothing until the summary.</summary>
    None,
}

/// <summary>One of several upstreams given on the command line.</summary>
/// <param name="BaseUrl">Its base url.</param>
/// <param name="Weight">Its share of traffic.</param>
internal sealed record UpstreamTarget(Uri BaseUrl, int Weight);

/// <summary>Where requests go and how they are sent: what <c>run</c> and <c>serve</c> share.</summary>
internal record EngineSettings
{
    public ProviderChoice Provider { get; init; }

    public Uri? BaseUrl { get; init; }

    public IReadOnlyList<UpstreamTarget> Upstreams { get; init; } = [];

    public string? ConfigPath { get; init; }

    public long? RequestsPerMinute { get; init; }

    public long? TokensPerMinute { get; init; }

    public long? InputTokensPerMinute { get; init; }

    public long? OutputTokensPerMinute { get; init; }

    public string? ApiKey { get; init; }

    public string AnthropicVersion { get; init; } = "2023-06-01";

    public int Concurrency { get; init; } = 32;

    public int MaxAttempts { get; init; } = 6;

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(10);

    public bool Verbose { get; init; }

    public SimulatorOptions Simulator { get; init; } = new();

    public int SimulatorSeed { get; init; } = 1;
}

/// <summary>Everything <c>shepherd run</c> was told.</summary>
internal sealed record RunSettings : EngineSettings
{
    public required string InputPath { get; init; }

    public string? StatePath { get; init; }

    public string? OutputPath { get; init; }

    /// <summary>What the output is written as: the batch API's result lines, or a table.</summary>
    public Engine.Batches.ResultFormat Format { get; init; }

    public string? ErrorsPath { get; init; }

    public BatchPriority Priority { get; init; } = BatchPriority.Normal;

    /// <summary>How long after its creation the batch must be done by (<c>--deadline</c>); null to keep what the stored batch has (none for a new one).</summary>
    public TimeSpan? Deadline { get; init; }

    /// <summary>The mode asked for (<c>--mode</c>); null to keep the stored batch's, or to let a new one be chosen.</summary>
    public BatchMode? Mode { get; init; }

    public bool Fresh { get; init; }

    /// <summary>The answer cache (<c>--cache</c>); null for the default place.</summary>
    public string? CachePath { get; init; }

    /// <summary>No answer cache (<c>--no-cache</c>).</summary>
    public bool NoCache { get; init; }

    /// <summary>Requests that ask for sampling are sent every time, not replayed from the cache (<c>--no-cache-sampled</c>).</summary>
    public bool NoCacheSampled { get; init; }

    /// <summary>How the run's batch uses the answer cache, by the flags.</summary>
    public CacheUse CacheUse => NoCache ? CacheUse.Off : NoCacheSampled ? CacheUse.Unsampled : CacheUse.All;

    public ProgressMode Progress { get; init; }

    public bool Json { get; init; }

    /// <summary>Queue the failed and expired requests of the stored batch again before sending.</summary>
    public bool RetryFailed { get; init; }

    /// <summary>The batch's budget in billionths of a US dollar; null to keep what the stored batch has (none for a new one).</summary>
    public long? BudgetNanos { get; init; }

    /// <summary>The JSON Schema every answer must fit (a request's own schema wins), as the text of <c>--output-schema</c>; null to keep the saved batch's.</summary>
    public string? OutputSchema { get; init; }

    /// <summary>How often an answer that does not fit is asked again (<c>--max-invalid-attempts</c>); null to keep the saved batch's.</summary>
    public int? MaxReasks { get; init; }

    /// <summary>How long every upstream may stay down before the run gives up (the batch stays resumable).</summary>
    public TimeSpan MaxOutage { get; init; } = TimeSpan.FromMinutes(15);
}
