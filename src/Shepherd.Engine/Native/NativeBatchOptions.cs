namespace Shepherd.Engine.Native;

/// <summary>How batches in <c>native</c> mode are handed to providers' own batch APIs.</summary>
public sealed class NativeBatchOptions
{
    /// <summary>
    /// How often each provider job is asked whether it has ended.
    /// <value>The default is 30 seconds.</value>
    /// </summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long items handed to a provider stay leased: longer than the provider's 24-hour window.
    /// <value>The default is 25 hours.</value>
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromHours(25);

    /// <summary>
    /// The most lines in one OpenAI batch input file.
    /// <value>The default is 50,000, OpenAI's limit.</value>
    /// </summary>
    public int OpenAIMaxLines { get; set; } = 50_000;

    /// <summary>
    /// The largest OpenAI batch input file, in bytes.
    /// <value>The default is 200 MB, OpenAI's limit.</value>
    /// </summary>
    public long OpenAIMaxBytes { get; set; } = 200L * 1024 * 1024;

    /// <summary>
    /// The most requests in one Anthropic message batch.
    /// <value>The default is 100,000, Anthropic's limit.</value>
    /// </summary>
    public int AnthropicMaxRequests { get; set; } = 100_000;

    /// <summary>
    /// The largest Anthropic message batch create body, in bytes.
    /// <value>The default is 256 MB, Anthropic's limit.</value>
    /// </summary>
    public long AnthropicMaxBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>
    /// How long a provider job cancelled by the planner is waited for before its requests go to
    /// realtime anyway; lines the provider still finishes after that are the only ones that can
    /// be paid twice. Part of the margin the planner keeps before a deadline.
    /// <value>The default is 10 minutes, the time OpenAI gives itself to cancel a batch.</value>
    /// </summary>
    public TimeSpan CancelGrace { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The share of the time realtime needs for what is open that the planner keeps in hand
    /// before a deadline, for lanes slower than their limits.
    /// <value>The default is 0.25.</value>
    /// </summary>
    public double SafetyShare { get; set; } = 0.25;

    /// <summary>
    /// Requests per second the planner counts on for a model whose lanes have no configured or
    /// learned limit.
    /// <value>The default is 10.</value>
    /// </summary>
    public double AssumedRequestsPerSecond { get; set; } = 10;

    /// <summary>
    /// The margin the planner keeps before a deadline beyond <paramref name="need"/>, the time
    /// realtime needs for what is open: <see cref="SafetyShare"/> of that, two looks at the
    /// provider (<see cref="PollInterval"/>) and a cancel's grace (<see cref="CancelGrace"/>).
    /// </summary>
    public TimeSpan Margin(TimeSpan need) => (need * SafetyShare) + (2 * PollInterval) + CancelGrace;

    /// <summary>The last moment a planned batch can move <paramref name="need"/>'s worth of open requests to realtime and still meet <paramref name="deadline"/>.</summary>
    public DateTimeOffset LastSafeMoment(DateTimeOffset deadline, TimeSpan need) => deadline - need - Margin(need);

    /// <summary>How long realtime takes for <paramref name="requests"/> at <paramref name="requestsPerSecond"/> (<see cref="AssumedRequestsPerSecond"/> when unknown).</summary>
    public TimeSpan RealtimeNeed(long requests, double? requestsPerSecond) =>
        TimeSpan.FromSeconds(requests / (requestsPerSecond is { } rate and > 0 ? rate : AssumedRequestsPerSecond));

    /// <summary>Items are claimed from the store in chunks of this many.</summary>
    internal int ClaimChunk { get; set; } = 1000;

    internal NativeBatchOptions Validated()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(PollInterval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(LeaseDuration, TimeSpan.FromMinutes(1));
        ArgumentOutOfRangeException.ThrowIfLessThan(OpenAIMaxLines, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(OpenAIMaxBytes, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThan(AnthropicMaxRequests, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(AnthropicMaxBytes, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThan(CancelGrace, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfNegative(SafetyShare);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(AssumedRequestsPerSecond, 0);
        return new NativeBatchOptions
        {
            PollInterval = PollInterval,
            LeaseDuration = LeaseDuration,
            OpenAIMaxLines = OpenAIMaxLines,
            OpenAIMaxBytes = OpenAIMaxBytes,
            AnthropicMaxRequests = AnthropicMaxRequests,
            AnthropicMaxBytes = AnthropicMaxBytes,
            CancelGrace = CancelGrace,
            SafetyShare = SafetyShare,
            AssumedRequestsPerSecond = AssumedRequestsPerSecond,
            ClaimChunk = ClaimChunk,
        };
    }
}
