using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The words batch statuses are stored as, which the stores' SQL is written with.</summary>
public sealed class StoredStatusTests
{
    [Fact]
    public void EveryStatus_HasAWordOfItsOwn_AndIsReadBackFromIt()
    {
        var statuses = Enum.GetValues<BatchStatus>();

        Assert.Equal(statuses.Length, statuses.Select(StoredStatus.Word).Distinct(StringComparer.Ordinal).Count());
        Assert.All(statuses, status => Assert.Equal(status, StoredStatus.Parse(StoredStatus.Word(status))));
    }

    [Fact]
    public void TheWords_AreTheBatchApisOnes_QuotedForSql()
    {
        Assert.Equal("in_progress", StoredStatus.Word(BatchStatus.InProgress));
        Assert.Equal("'in_progress'", StoredStatus.InProgress);
        Assert.Equal("'cancelling'", StoredStatus.Cancelling);
    }

    [Fact]
    public void AnUnknownWord_IsAStoreError()
    {
        var error = Assert.Throws<StoreException>(() => StoredStatus.Parse("paused"));

        Assert.Contains("'paused'", error.Message, StringComparison.Ordinal);
    }
}
