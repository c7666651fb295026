using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Shepherd.Bench;

/// <summary>
/// What any reverse proxy costs: a bare Kestrel app on 127.0.0.1 that forwards each request's
/// method, path and body to one upstream with a single shared <see cref="HttpClient"/>, and copies
/// back the status, the content type and the body, a chunk at a time with a flush after each (so a
/// stream goes through as it comes). Nothing else: no headers, no retries, no limits.
/// </summary>
internal sealed class BareProxy : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly HttpClient _upstream;

    private BareProxy(WebApplication app, HttpClient upstream, Uri baseUrl)
    {
        _app = app;
        _upstream = upstream;
        BaseUrl = baseUrl;
    }

    /// <summary>The proxy's root, such as <c>http://127.0.0.1:5123/</c>.</summary>
    public Uri BaseUrl { get; }

    /// <summary>Starts a proxy to <paramref name="upstream"/> (a root url) on a free port.</summary>
    public static async Task<BareProxy> StartAsync(Uri upstream)
    {
        var client = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = int.MaxValue,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
        })
        { BaseAddress = upstream, Timeout = Timeout.InfiniteTimeSpan };
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel => kestrel.AddServerHeader = false).UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        app.Run(context => ForwardAsync(context, client));
        await app.StartAsync();
        return new BareProxy(app, client, new Uri(app.Urls.Single().TrimEnd('/') + "/"));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync();
        _upstream.Dispose();
    }

    private static async Task ForwardAsync(HttpContext context, HttpClient upstream)
    {
        var aborted = context.RequestAborted;
        using var content = new StreamContent(context.Request.Body);
        content.Headers.ContentLength = context.Request.ContentLength;
        if (context.Request.ContentType is { } type)
        {
            content.Headers.TryAddWithoutValidation("Content-Type", type);
        }

        using var request = new HttpRequestMessage(new HttpMethod(context.Request.Method), context.Request.Path.Value!.TrimStart('/') + context.Request.QueryString) { Content = content };
        using var response = await upstream.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, aborted);
        context.Response.StatusCode = (int)response.StatusCode;
        context.Response.ContentType = response.Content.Headers.ContentType?.ToString();
        await using var body = await response.Content.ReadAsStreamAsync(aborted);
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await body.ReadAsync(buffer, aborted)) > 0)
        {
            await context.Response.Body.WriteAsync(buffer.AsMemory(0, read), aborted);
            await context.Response.Body.FlushAsync(aborted);
        }
    }
}
