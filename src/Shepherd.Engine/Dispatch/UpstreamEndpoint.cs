using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// An upstream as the dispatcher uses it: its client, its circuit breaker, the count of its
/// requests in flight, and, while it is down, since when and why. Owned by the dispatcher's loop.
/// </summary>
internal sealed class UpstreamEndpoint(UpstreamClient client, DispatchOptions options)
{
    public UpstreamClient Client { get; } = client;

    public CircuitBreaker Breaker { get; } = new(options.BreakerFailuresToOpen, options.BreakerBreakDuration, options.BreakerMaxBreakDuration);

    public string Name => Client.Options.Name!;

    public int Weight => Client.Options.Weight;

    public UpstreamKind Kind => Client.Kind;

    /// <summary>Requests in flight over all of this upstream's lanes.</summary>
    public int InFlight { get; set; }

    /// <summary>Since when the upstream has failed without an answer that shows it up (the first failure of the run that opened its breaker); null while it is up.</summary>
    public DateTimeOffset? DownSince { get; private set; }

    /// <summary>The last outage failure, in words ("connection failed: Connection refused", "HTTP 503").</summary>
    public string? LastFailure { get; private set; }

    /// <summary>True while the breaker keeps requests from the upstream: open, or letting one probe through.</summary>
    public bool IsDown => Breaker.State != BreakerState.Closed;

    private DateTimeOffset? _failingSince;

    /// <summary>The failures that say the upstream itself is in trouble, as opposed to the request or the rate.</summary>
    public static bool IsOutage(UpstreamResponse response) =>
        response.StatusCode is { } status ? status is 408 or >= 500 : response.FailureCode is FailureCodes.ConnectionError or FailureCodes.RequestTimeout;

    /// <summary>Records an answer: an outage failure counts towards the breaker; any other answer shows the upstream up. Returns how the breaker changed.</summary>
    public BreakerChange Record(UpstreamResponse response, DateTimeOffset now)
    {
        if (!IsOutage(response))
        {
            var wasDown = IsDown;
            Breaker.Succeeded();
            _failingSince = null;
            DownSince = null;
            return wasDown ? BreakerChange.Closed : BreakerChange.None;
        }

        _failingSince ??= now;
        LastFailure = response.StatusCode is { } status ? $"HTTP {status}" : response.FailureMessage ?? response.FailureCode;
        if (!Breaker.Failed(now))
        {
            return BreakerChange.None;
        }

        var opened = DownSince is null;
        DownSince ??= _failingSince;
        return opened ? BreakerChange.Opened : BreakerChange.None;
    }
}

/// <summary>What an answer did to an upstream's breaker.</summary>
internal enum BreakerChange
{
    None,

    /// <summary>The upstream is taken for down: its breaker opened.</summary>
    Opened,

    /// <summary>The upstream answered again after being down.</summary>
    Closed,
}
