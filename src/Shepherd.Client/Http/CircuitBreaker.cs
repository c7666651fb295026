namespace Shepherd.Client.Http;

/// <summary>
/// Stops a dead server from being hammered: after a run of failed calls it opens and refuses
/// calls for a while, then lets one trial call through; its success closes it again.
/// </summary>
internal sealed class CircuitBreaker(int failuresToOpen, TimeSpan openFor, TimeProvider time)
{
    private readonly object _lock = new();
    private int _failures;
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
                throw new ShepherdApiException(
                    $"The server failed {_failures} calls in a row; calls are held back until {until:O} (circuit breaker open).", null, "circuit_open", null);
            }

            _trialOut = true;
        }
    }

    public void Succeeded()
    {
        lock (_lock)
        {
            _failures = 0;
            _openUntil = null;
            _trialOut = false;
        }
    }

    public void Failed()
    {
        lock (_lock)
        {
            _failures++;
            if (_failures >= failuresToOpen || _trialOut)
            {
                _openUntil = time.GetUtcNow() + openFor;
                _trialOut = false;
            }
        }
    }
}
