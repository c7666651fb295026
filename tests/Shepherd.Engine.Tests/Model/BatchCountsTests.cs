using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Tests.Model;

/// <summary>A batch's counts as every summary writes them: the dashboard, <c>status --json</c>, <c>run --json</c> and the batch object.</summary>
public sealed class BatchCountsTests
{
    /// <summary>20 succeeded: 12 from the cache (bought for $0.36), 2 native, the rest in realtime.</summary>
    private static readonly BatchRecord Batch = new()
    {
        Id = "batch_counts",
        Format = InputFormat.OpenAI,
        Status = BatchStatus.Completed,
        CreatedAt = DateTimeOffset.UnixEpoch,
        Total = 20,
        Succeeded = 20,
        CostNanos = 90_000_000,
        Tiers = new TierTally(2, 10_000_000, 0, 0, 10_000_000),
        Cached = 12,
        CacheSavedNanos = 360_000_000,
    };

    [Theory]
    [InlineData("progress")]
    [InlineData("outcome")]
    public void EverySummary_SaysHowManyAnswersCameFromTheCache_AndWhatTheySaved(string writer)
    {
        var counts = BatchCounts.Of(Batch);
        var json = Written(writer == "progress" ? counts.WriteProgress : counts.WriteOutcome);

        Assert.Equal((12L, 0.36m), (json.GetProperty("cached").GetInt64(), json.GetProperty("cache_saved_usd").GetDecimal()));
        // The tiers and the cache together make up the succeeded requests.
        var tiers = json.GetProperty("tiers");
        Assert.Equal((6L, 2L), (tiers.GetProperty("realtime").GetProperty("requests").GetInt64(), tiers.GetProperty("native").GetProperty("requests").GetInt64()));
    }

    [Fact]
    public void ABatchWithoutCachedAnswers_WritesZeros_AndHasNoLineForAPerson()
    {
        var counts = BatchCounts.Of(Batch with { Cached = 0, CacheSavedNanos = 0 });
        var json = Written(counts.WriteProgress);

        Assert.Equal((0L, 0m), (json.GetProperty("cached").GetInt64(), json.GetProperty("cache_saved_usd").GetDecimal()));
        Assert.Null(counts.DescribeCached());
    }

    [Fact]
    public void ThePersonsLine_CountsTheCachedAnswers_AndWhatTheyWouldHaveCost()
    {
        Assert.Equal("12 answers not sent for again ($0.36 not paid again)", BatchCounts.Of(Batch).DescribeCached());
        Assert.Equal("1 answer not sent for again ($0.03 not paid again)", BatchCounts.Of(Batch with { Cached = 1, CacheSavedNanos = 30_000_000 }).DescribeCached());
    }

    private static JsonElement Written(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            write(json);
            json.WriteEndObject();
        }

        return JsonDocument.Parse(buffer.ToArray()).RootElement.Clone();
    }
}
