using Shepherd.Engine.Dispatch;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class CircuitBreakerTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);

    private static CircuitBreaker Create() => new(3, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5));

    [Fact]
    public void OpensAfterConsecutiveFailures_NotAfterScatteredOnes()
    {
        var breaker = Create();

        breaker.Failed(T0);
        breaker.Failed(T0);
        breaker.Succeeded();
        breaker.Failed(T0);
        breaker.Failed(T0);
        Assert.Equal(BreakerState.Closed, breaker.State);

        Assert.True(breaker.Failed(T0));
        Assert.Equal(BreakerState.Open, breaker.State);
        Assert.Equal(TimeSpan.FromSeconds(2), breaker.WaitBeforeSending(T0, 0));
    }

    [Fact]
    public void AfterTheBreak_OneProbeGoes_AndItsAnswerDecides()
    {
        var breaker = Create();
        for (var i = 0; i < 3; i++)
        {
            breaker.Failed(T0);
        }

        Assert.Equal(TimeSpan.Zero, breaker.WaitBeforeSending(T0.AddSeconds(2), 0));
        Assert.Equal(BreakerState.HalfOpen, breaker.State);
        Assert.Null(breaker.WaitBeforeSending(T0.AddSeconds(2), 1));

        breaker.Succeeded();
        Assert.Equal(BreakerState.Closed, breaker.State);
        Assert.Equal(TimeSpan.Zero, breaker.WaitBeforeSending(T0.AddSeconds(2), 5));
    }

    [Fact]
    public void EachFailedProbe_DoublesTheBreak_UpToTheCap()
    {
        var breaker = Create();
        for (var i = 0; i < 3; i++)
        {
            breaker.Failed(T0);
        }

        var now = T0;
        var breaks = new List<TimeSpan>();
        for (var probe = 0; probe < 4; probe++)
        {
            now = breaker.OpenUntil;
            Assert.Equal(TimeSpan.Zero, breaker.WaitBeforeSending(now, 0));
            Assert.True(breaker.Failed(now));
            breaks.Add(breaker.OpenUntil - now);
        }

        Assert.Equal([TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5)], breaks);
    }
}
