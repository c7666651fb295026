using Shepherd.Server.Tests;

namespace Shepherd.Client.Tests;

/// <summary>What a refused call tells the caller.</summary>
public sealed class ErrorTests
{
    [Fact]
    public async Task ARefusedCall_CarriesTheStatusTheCodeAndTheServersRequestId()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientTests.ClientOf(server);

        var refused = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_missing", TestContext.Current.CancellationToken));

        Assert.Equal(404, refused.StatusCode);
        Assert.False(string.IsNullOrEmpty(refused.RequestId));
        Assert.False(string.IsNullOrEmpty(refused.ErrorCode));
    }

    [Fact]
    public async Task ABatch_CarriesTheHttpAnswerItCameIn()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = ClientTests.ClientOf(server);

        var batch = await client.CreateBatchAsync(new NewBatch { Model = "gpt-4o-mini", Requests = [BatchItem.FromPrompt("a", "hi")] }, TestContext.Current.CancellationToken);
        var seen = await client.GetBatchAsync(batch.Id, TestContext.Current.CancellationToken);

        Assert.Equal(200, seen.Response?.Status);
        Assert.False(string.IsNullOrEmpty(seen.Response?.RequestId));
        Assert.Equal(seen.Response?.RequestId, seen.Response?.Headers["X-Request-Id"]);
        Assert.NotEqual(batch.Response?.RequestId, seen.Response?.RequestId);
    }

    [Fact]
    public void EveryFailureOfACall_IsOneFamily_CaughtAsShepherdException()
    {
        Exception[] failures = [new ShepherdApiException("refused"), new BatchNotEndedException("running"), new BatchCollectorException("no result")];

        Assert.All(failures, failure => Assert.IsAssignableFrom<ShepherdException>(failure));
    }
}
