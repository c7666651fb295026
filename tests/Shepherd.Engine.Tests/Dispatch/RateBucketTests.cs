using Shepherd.Engine.Dispatch;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class RateBucketTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 28, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void OneSecondsWorth_GoesAtOnce_ThenTheRateHolds()
    {
        var bucket = new RateBucket(600, T0);

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(TimeSpan.Zero, bucket.WaitFor(1, T0));
            bucket.Add(1, T0);
        }

        Assert.Equal(TimeSpan.FromMilliseconds(100), bucket.WaitFor(1, T0));
        Assert.Equal(TimeSpan.Zero, bucket.WaitFor(1, T0.AddMilliseconds(100)));
    }

    [Fact]
    public void OverAMinute_ExactlyTheLimitGoes()
    {
        var bucket = new RateBucket(6000, T0);
        var sent = 0;
        for (var now = T0; now < T0.AddMinutes(1); now = now.AddMilliseconds(7))
        {
            while (bucket.WaitFor(1, now) == TimeSpan.Zero)
            {
                bucket.Add(1, now);
                sent++;
            }
        }

        // One second's worth may go at the very start; after that, the rate.
        Assert.InRange(sent, 6000, 6100);
    }

    [Fact]
    public void ARequestLargerThanOneSecondsWorth_GoesAlone_AndLeavesADebt()
    {
        var bucket = new RateBucket(60, T0);

        Assert.Equal(TimeSpan.Zero, bucket.WaitFor(5, T0));
        bucket.Add(5, T0);

        Assert.Equal(TimeSpan.FromSeconds(5), bucket.WaitFor(5, T0));
        Assert.Equal(TimeSpan.FromSeconds(5), bucket.WaitFor(1, T0));
        Assert.Equal(TimeSpan.FromSeconds(1), bucket.WaitFor(1, T0.AddSeconds(4)));
        Assert.Equal(TimeSpan.Zero, bucket.WaitFor(1, T0.AddSeconds(5)));
    }

    [Fact]
    public void GivingBack_NeverGoesBelowEmpty()
    {
        var bucket = new RateBucket(60, T0);
        bucket.Add(1, T0);

        bucket.Add(-5, T0);

        Assert.Equal(0, bucket.Level(T0));
    }

    [Fact]
    public void Sync_TakesTheProvidersLevel_AndReplaysWhatWentLater()
    {
        var bucket = new RateBucket(600, T0);
        bucket.Add(10, T0);

        // At T0 the provider held 4; at T0+50ms one more went out.
        bucket.Sync(4, T0, [(T0.AddMilliseconds(50), 1.0)], T0.AddMilliseconds(100));

        // 4 drained by 0.5 at 50 ms, plus 1, drained by 0.5 more at 100 ms.
        Assert.Equal(4.0, bucket.Level(T0.AddMilliseconds(100)), 6);
    }

    [Fact]
    public void ALimitChange_AppliesToWhatFollows()
    {
        var bucket = new RateBucket(60, T0);
        bucket.Add(1, T0);

        bucket.SetLimit(120);

        Assert.Equal(120, bucket.PerMinute);
        Assert.Equal(TimeSpan.Zero, bucket.WaitFor(1, T0));
    }
}
