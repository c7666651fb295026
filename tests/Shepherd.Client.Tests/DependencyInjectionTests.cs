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
        Assert.Same(client, provider.GetRequiredService<IShepherdClient>());
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

    [Theory]
    [InlineData("MaxRetries", "lots", "Shepherd:MaxRetries cannot be 'lots'.")]
    [InlineData("requesttimeout", "soon", "Shepherd:requesttimeout cannot be 'soon'.")]
    [InlineData("Api", "Gemini", "Shepherd:Api cannot be 'Gemini'.")]
    public void ASettingThatCannotBe_IsSaidWithItsPlaceAndValue(string key, string value, string message)
    {
        var services = new ServiceCollection();
        services.AddShepherdClient(Section(("BaseUrl", "http://127.0.0.1:8080"), (key, value)));
        using var provider = services.BuildServiceProvider();

        Assert.Equal(message, Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<ShepherdClient>()).Message);
    }

    [Fact]
    public void EverySetting_IsRead_InAnyCase()
    {
        var services = new ServiceCollection();
        services.AddShepherdClient(Section(("BaseUrl", "http://127.0.0.1:8080"), ("apikey", "k"), ("API", "OpenAI"), ("MaxRetries", "7"), ("RetryBaseDelay", "00:00:01"),
            ("RetryMaxDelay", "00:01:00"), ("BreakerFailures", "3"), ("BreakerDuration", "00:00:09"), ("RequestTimeout", "00:02:00"), ("PollInitialDelay", "00:00:03"),
            ("PollGrowth", "2.5"), ("PollMaxDelay", "00:00:40"), ("WaitOutageTolerance", "00:20:00"), ("ResultsPageSize", "50")));
        using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<ShepherdClient>().Options;

        Assert.Equal(("k", BatchApi.OpenAI, 7, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(1), 3, TimeSpan.FromSeconds(9)),
            (options.ApiKey, options.Api, options.MaxRetries, options.RetryBaseDelay, options.RetryMaxDelay, options.BreakerFailures, options.BreakerDuration));
        Assert.Equal((TimeSpan.FromMinutes(2), TimeSpan.FromSeconds(3), 2.5, TimeSpan.FromSeconds(40), TimeSpan.FromMinutes(20), 50),
            (options.RequestTimeout, options.PollInitialDelay, options.PollGrowth, options.PollMaxDelay, options.WaitOutageTolerance, options.ResultsPageSize));
    }

    [Fact]
    public void AMisspelledSetting_IsAnError_NotIgnored()
    {
        var services = new ServiceCollection();
        services.AddShepherdClient(Section(("BaseUrl", "http://127.0.0.1:8080"), ("MaxRetrys", "2")));
        using var provider = services.BuildServiceProvider();

        Assert.Contains("MaxRetrys", Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<ShepherdClient>()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CodeThatTakesTheInterface_RunsAgainstAFake()
    {
        var fake = new FakeClient();
        IShepherdClient client = fake;

        var done = await client.Batch("batch_1").WaitAsync(Ct);

        Assert.Equal((BatchStatus.Completed, "batch_1"), (done.Batch.Status, done.Batch.Id));
        Assert.Equal(["wait batch_1"], fake.Calls);
    }

    /// <summary>A client that ends every batch at once, as a test of an application would give it.</summary>
    private sealed class FakeClient : IShepherdClient
    {
        public List<string> Calls { get; } = [];

        public Task<BatchCompletion> WaitForCompletionAsync(string batchId, IProgress<BatchProgress>? progress = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
        {
            Calls.Add($"wait {batchId}");
            return Task.FromResult(new BatchCompletion(new Batch { Id = batchId, Status = BatchStatus.Completed }, TimedOut: false));
        }

        public Task<Batch> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<Batch> CreateBatchFromFileAsync(string path, FileBatchOptions? options = null, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<Batch> GetBatchAsync(string batchId, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public IAsyncEnumerable<Batch> ListBatchesAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<Batch> CancelBatchAsync(string batchId, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public IAsyncEnumerable<BatchResult> GetResultsAsync(string batchId, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<BatchResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<long> ExportResultsAsync(string batchId, string path, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<Batch?> RetryFailedAsync(string batchId, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<CallAnswer> CallAsync(string url, System.Text.Json.Nodes.JsonObject body, TimeSpan deadline, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<CallAnswer> CallAsync(string model, ChatRequest chat, TimeSpan deadline, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<string> StartCallAsync(string url, System.Text.Json.Nodes.JsonObject body, TimeSpan deadline, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<CallAnswer> GetCallAsync(string callId, CancellationToken cancellationToken = default) => throw new NotSupportedException();
    }
}
