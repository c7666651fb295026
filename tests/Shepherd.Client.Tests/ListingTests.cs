using System.Net;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>Listing batches pages the same way in both APIs: by the page's last id, until the server says there is no more.</summary>
public sealed class ListingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(BatchApi.OpenAI, "v1/batches", "after")]
    [InlineData(BatchApi.Anthropic, "v1/messages/batches", "after_id")]
    public async Task EveryPage_IsRead_AskingForTheNextByTheLastId(BatchApi api, string path, string after)
    {
        var handler = new ScriptedHandler(
            ScriptedHandler.Json(HttpStatusCode.OK, """{"data":[{"id":"b1"},{"id":"b2"}],"last_id":"b2","has_more":true}"""),
            ScriptedHandler.Json(HttpStatusCode.OK, """{"data":[{"id":"b3"}],"last_id":"b3","has_more":false}"""));
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri("http://shepherd.test"), ApiKey = "k", Api = api }, new HttpClient(handler));

        var ids = await client.ListBatchesAsync(Ct).Select(b => b.Id).ToListAsync(Ct);

        Assert.Equal(["b1", "b2", "b3"], ids);
        Assert.Equal(
            [$"/{path}?limit=100", $"/{path}?limit=100&{after}=b2"],
            handler.Received.Select(r => r.Request.RequestUri!.PathAndQuery));
    }

    [Theory]
    [InlineData(BatchApi.OpenAI, """{"data":[{"id":"b1"}],"last_id":"b1","has_more":"yes"}""")]
    [InlineData(BatchApi.Anthropic, """{"data":[{"id":"b1"}],"last_id":"b1","has_more":"yes"}""")]
    [InlineData(BatchApi.OpenAI, """{"data":[{"id":"b1"}],"has_more":true}""")]
    public async Task APageThatDoesNotClearlySayMore_EndsTheListing(BatchApi api, string page)
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, page));
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri("http://shepherd.test"), ApiKey = "k", Api = api }, new HttpClient(handler));

        var ids = await client.ListBatchesAsync(Ct).Select(b => b.Id).ToListAsync(Ct);

        Assert.Equal(["b1"], ids);
        Assert.Single(handler.Received);
    }
}
