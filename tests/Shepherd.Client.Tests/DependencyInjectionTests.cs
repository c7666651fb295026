using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Shepherd.Server.Tests;

namespace Shepherd.Client.Tests;

/// <summary><c>AddShepherdClient</c>: a client from configuration, through IHttpClientFactory.</summary>
public sealed class DependencyInjectionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static IConfigurationSection Section(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => KeyValuePair.Create("Shepherd:" + s.Key, (string?)s.Value))).Build().GetSection("Shepherd");

    [Fact]
    public async Task AClientFromConfiguration_CreatesAndWaitsForABatch()
    {
        await using var server = await RunningServer.StartAsync();
        var services = new ServiceCollection();
        services.AddShepherdClient(Section(("BaseUrl", server.BaseUrl.ToString()), ("ApiKey", RunningServer.Key), ("PollInitialDelay", "00:00:00.05"), ("Api", "Shepherd")));
        await using var provider = services.BuildServiceProvider();

        var client = provider.GetRequiredService<ShepherdClient>();
        var batch = await client.CreateBatchAsync(new NewBatch { Model = "gpt-4o-mini", Requests = [BatchItem.FromPrompt("a", "hi")] }, Ct);
        var done = await client.WaitForCompletionAsync(batch.Id, cancellationToken: Ct);

        Assert.Same(client, provider.GetRequiredService<ShepherdClient>());
        Assert.Equal(TimeSpan.FromMilliseconds(50), client.Options.PollInitialDelay);
        Assert.True(done.AllSucceeded, done.Batch.ToString());
    }

    [Theory]
    [InlineData("ApiKey", "k", "Shepherd:BaseUrl must be the absolute url")]
    [InlineData("BaseUrl", "not a url", "Shepherd:BaseUrl must be the absolute url")]
    public void AMissingOrWrongBaseUrl_IsSaidWithItsPlaceInTheConfiguration(string key, string value, string message)
    {
        var services = new ServiceCollection();
        services.AddShepherdClient(Section((key, value)));
        using var provider = services.BuildServiceProvider();

        Assert.StartsWith(message, Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<ShepherdClient>()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AMisspelledSetting_IsAnError_NotIgnored()
    {
        var services = new ServiceCollection();
        services.AddShepherdClient(Section(("BaseUrl", "http://127.0.0.1:8080"), ("MaxRetrys", "2")));
        using var provider = services.BuildServiceProvider();

        Assert.Contains("MaxRetrys", Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<ShepherdClient>()).Message, StringComparison.Ordinal);
    }
}
