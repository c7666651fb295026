using Polly;
using Polly.CircuitBreaker;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// An upstream as the dispatcher uses it: its client behind a circuit breaker (Polly). When
/// most recent requests fail for outage reasons (no answer, 5xx, 408), the breaker opens and
/// the upstream is not asked until a probe succeeds; its items wait or go to another upstream.
/// </summary>
internal sealed class UpstreamEndpoint
{
    private readonly ResiliencePipeline<UpstreamResponse> _pipeline;
    private readonly CircuitBreakerStateProvider _state = new();
    private readonly TimeProvider _time;
    private long _openUntilTicks;

    public UpstreamEndpoint(UpstreamClient client, DispatchOptions options, TimeProvider time)
    {
        Client = client;
        _time = time;
        _pipeline = new ResiliencePipelineBuilder<UpstreamResponse> { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<UpstreamResponse>
            {
                FailureRatio = options.BreakerFailureRatio,
                MinimumThroughput = options.BreakerMinimumThroughput,
                SamplingDuration = options.BreakerSamplingDuration,
                BreakDuration = options.BreakerBreakDuration,
                // Each failed probe doubles the wait, so a long outage is probed less and less often.
                BreakDurationGenerator = args => ValueTask.FromResult(TimeSpan.FromTicks(Math.Min(
                    options.BreakerMaxBreakDuration.Ticks,
                    options.BreakerBreakDuration.Ticks * (1L << Math.Min(args.HalfOpenAttempts, 20))))),
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Result is { } response && IsOutage(response)),
                StateProvider = _state,
                OnOpened = args =>
                {
                    Interlocked.Exchange(ref _openUntilTicks, (_time.GetUtcNow() + args.BreakDuration).UtcTicks);
                    return default;
                },
                OnClosed = _ =>
                {
                    Interlocked.Exchange(ref _openUntilTicks, 0);
                    return default;
                },
            })
            .Build();
    }

    public UpstreamClient Client { get; }

    public string Name => Client.Options.Name!;

    public int Weight => Client.Options.Weight;

    public UpstreamKind Kind => Client.Kind;

    /// <summary>Closed when healthy; open or half-open after an outage.</summary>
    public CircuitState State => _state.CircuitState;

    /// <summary>Until when the open breaker refuses requests; null when it is not open.</summary>
    public DateTimeOffset? OpenUntil => Interlocked.Read(ref _openUntilTicks) is var ticks and > 0 ? new DateTimeOffset(ticks, TimeSpan.Zero) : null;

    /// <summary>Sends through the breaker; an open breaker answers <see cref="FailureCodes.CircuitOpen"/> without asking.</summary>
    public async Task<UpstreamResponse> SendAsync(string url, byte[] body, CancellationToken cancellationToken)
    {
        try
        {
            return await _pipeline.ExecuteAsync(
                static (state, token) => new ValueTask<UpstreamResponse>(state.Client.SendAsync(state.url, state.body, token)),
                (Client, url, body),
                cancellationToken);
        }
        catch (BrokenCircuitException ex)
        {
            return new UpstreamResponse
            {
                FailureCode = FailureCodes.CircuitOpen,
                FailureMessage = $"upstream {Name} is failing; its circuit breaker is open",
                RetryAfter = ex.RetryAfter,
            };
        }
    }

    /// <summary>The failures that say the upstream itself is in trouble, as opposed to the request or the rate.</summary>
    public static bool IsOutage(UpstreamResponse response) =>
        response.StatusCode is { } status ? status is 408 or >= 500 : response.FailureCode is FailureCodes.ConnectionError or FailureCodes.RequestTimeout;
}
