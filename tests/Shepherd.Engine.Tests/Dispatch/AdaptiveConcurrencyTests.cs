using Shepherd.Engine.Dispatch;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class AdaptiveConcurrencyTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void WhileARateLimitPacesIt_AndUntilTheFirstOverload_GrowsByOneAfterEverySuccess()
    {
        var limit = new AdaptiveConcurrency(2, 10, TimeSpan.FromSeconds(1));
        var seen = new List<int>();

        for (var i = 0; i < 10; i++)
        {
            limit.Acquire();
            limit.Succeeded(paced: true);
            seen.Add(limit.Limit);
        }

        Assert.Equal([3, 4, 5, 6, 7, 8, 9, 10, 10, 10], seen);
    }

    [Fact]
    public void AfterAnOverload_GrowsByOne_AfterAWindowOfSuccesses_UpToTheMaximum()
    {
        var limit = new AdaptiveConcurrency(4, 4, TimeSpan.FromSeconds(1));
        limit.Acquire();
        limit.Overloaded(T0);
        var seen = new List<int>();

        for (var i = 0; i < 20; i++)
        {
            limit.Acquire();
            limit.Succeeded(paced: true);
            seen.Add(limit.Limit);
        }

        Assert.Equal([2, 3, 3, 3, 4, 4, 4, 4, 4], seen.Take(9));
        Assert.Equal(4, limit.Limit);
    }

    [Fact]
    public void Unpaced_GrowsByOne_AfterAWindowOfSuccesses_FromTheStart()
    {
        var limit = new AdaptiveConcurrency(2, 4, TimeSpan.FromSeconds(1));
        var seen = new List<int>();

        for (var i = 0; i < 9; i++)
        {
            limit.Acquire();
            limit.Succeeded(paced: false);
            seen.Add(limit.Limit);
        }

        Assert.Equal([2, 3, 3, 3, 4, 4, 4, 4, 4], seen);
    }

    [Fact]
    public void HalvesOnOverload_OncePerCoolDown_NeverBelowOne()
    {
        var limit = new AdaptiveConcurrency(16, 16, TimeSpan.FromSeconds(1));

        limit.Acquire();
        limit.Overloaded(T0);
        limit.Acquire();
        limit.Overloaded(T0.AddMilliseconds(500));
        var afterBurst = limit.Limit;
        for (var i = 1; i <= 10; i++)
        {
            limit.Acquire();
            limit.Overloaded(T0.AddSeconds(i));
        }

        Assert.Equal(8, afterBurst);
        Assert.Equal(1, limit.Limit);
    }

    [Fact]
    public void CountsWhatIsInFlight()
    {
        var limit = new AdaptiveConcurrency(2, 10, TimeSpan.Zero);

        limit.Acquire();
        limit.Acquire();

        Assert.False(limit.HasRoom);
        limit.Release();
        Assert.True(limit.HasRoom);
        Assert.Equal(1, limit.InFlight);
    }
}
