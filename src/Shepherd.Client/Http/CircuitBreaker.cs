namespace Shepherd.Client.Http;

/// <summary>
/// Stops a dead server from being hammered: after a run of failed calls it opens and refuses
/// calls for a while, then lets one trial call through; its success closes it again. It counts
/// calls as the caller made them: the retries inside one call are one failure, not several.
/// </summary>
internal sealed class CircuitBreaker(int failuresToOpen, TimeSpan openFor, TimeProvider time)
{
    // An object, not System.Threading.Lock: the client runs on .NET 8 too.
    private readonly object _lock = new();
    private int _failures;
    private string? _lastFailure;
    private DateTimeOffset? _openUntil;
    private bool _trialOut;

    /// <summary>Throws while open; past the open time, lets one trial call through.</summary>
    public void Enter()
    {
        lock (_lock)
        {
            if (_openUntil is not { } until)
            {
                return;
            }

            var now = time.GetUtcNow();
            if (now < until || _trialOut)
            {
                var calls = _failures == 1 ? "The last call" : $"The last {_failures} calls";
                throw new ShepherdApiException(
                    $"{calls} to the server failed (the last: {_lastFailure}); calls are held back until {until:O} (circuit breaker open).", null, "circuit_open", null);
            }

            _trialOut = true;
        }
    }

    public void Succeeded()
    {
        lock (_lock)
        {
            _failures = 0;
            _lastFailure = null;
            _openUntil = null;
            _trialOut = false;
        }
    }

    /// <summary>A call ended without an outcome (its caller cancelled it): if it was the trial, the next call may be one.</summary>
    public void Abandoned()
    {
        lock (_lock)
        {
            _trialOut = false;
        }
    }

    /// <summary>Counts a call that failed, all its retries included; <paramref name="why"/> is what the breaker's refusals quote.</summary>
    public void Failed(string why)
    {
        lock (_lock)
        {
            _failures++;
            _lastFailure = why.TrimEnd('.');
            if (_failures >= failuresToOpen || _trialOut)
            {
                _openUntil = time.GetUtcNow() + openFor;
                _trialOut = false;
            }
        }
    }
}
