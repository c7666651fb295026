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
    public void EveryFailureOfACall_IsOneFamily_CaughtAsShepherdException()
    {
        Exception[] failures = [new ShepherdApiException("refused"), new BatchNotEndedException("running"), new BatchCollectorException("no result")];

        Assert.All(failures, failure => Assert.IsAssignableFrom<ShepherdException>(failure));
    }
}
