using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Shepherd.Simulator;

/// <summary>
/// Serves a <see cref="SimulatedProvider"/> over real HTTP on 127.0.0.1 with Kestrel: its
/// realtime endpoints and its batch APIs. A reset aborts the connection; a hang holds it until
/// the client gives up. <c>GET /_sim/stats</c> returns the counters as JSON. A <c>HEAD</c> of any path is answered 200 (refused while the
/// provider is down) and is not counted.
/// </summary>
public sealed class SimulatorServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SimulatorServer(WebApplication app, SimulatedProvider provider, Uri baseUrl)
    {
        _app = app;
        Provider = provider;
        BaseUrl = baseUrl;
    }

    /// <summary>The provider behind the server.</summary>
    public SimulatedProvider Provider { get; }

    /// <summary>The server's root, such as <c>http://127.0.0.1:5123/</c>; OpenAI clients append <c>v1</c>.</summary>
    public Uri BaseUrl { get; }

    /// <summary>Starts a server on 127.0.0.1 at <paramref name="port"/> (0 picks a free one).</summary>
    public static async Task<SimulatorServer> StartAsync(SimulatedProvider provider, int port, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(provider);
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, IPEndPoint.MaxPort);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, port);
            kestrel.Limits.MaxRequestBodySize = 256L * 1024 * 1024;
            kestrel.AddServerHeader = false;
        });
        var app = builder.Build();
        app.Run(context => ServeAsync(context, provider));
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new SimulatorServer(app, provider, new Uri(address.EndsWith('/') ? address : address + "/"));
    }

    /// <summary>Stops the server.</summary>
    public async ValueTask DisposeAsync() => await _app.DisposeAsync();

    private static async Task ServeAsync(HttpContext context, SimulatedProvider provider)
    {
        var request = context.Request;
        if (request.Path == "/_sim/stats" && HttpMethods.IsGet(request.Method))
        {
            await WriteStatsAsync(context.Response, provider.Stats(), context.RequestAborted);
            return;
        }

        if (HttpMethods.IsHead(request.Method))
        {
            // A client's look at whether the server answers at all (Shepherd's check before sending):
            // answered like any web server, refused while down, and not counted as a request.
            if (provider.Down)
            {
                context.Abort();
            }

            return;
        }

        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, context.RequestAborted);
        SimulatedResponse answer;
        try
        {
            answer = await provider.HandleAsync(
                new SimulatedRequest(request.Method, request.Path.Value ?? "/", buffer.ToArray(), request.Headers.Authorization, request.Headers["x-api-key"],
                    request.ContentType, request.QueryString.Value, new Uri($"{request.Scheme}://{request.Host}/")),
                context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        if (answer.Fault == SimulatedFault.Reset)
        {
            context.Abort();
            return;
        }

        var response = context.Response;
        response.StatusCode = answer.StatusCode;
        response.ContentType = answer.ContentType;
        foreach (var (name, value) in answer.Headers)
        {
            response.Headers.Append(name, value);
        }

        if (answer.Events.Count > 0 && answer.EventInterval > TimeSpan.Zero)
        {
            // A stream goes out an event at a time, as the provider makes it; a client that leaves ends it.
            try
            {
                for (var i = 0; i < answer.Events.Count; i++)
                {
                    if (i > 0)
                    {
                        await Task.Delay(answer.EventInterval, provider.Time, context.RequestAborted);
                    }

                    await response.Body.WriteAsync(answer.Events[i], context.RequestAborted);
                    await response.Body.FlushAsync(context.RequestAborted);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
            {
                // The client went away.
                provider.StreamCut();
            }

            return;
        }

        response.ContentLength = answer.Body.Length;
        await response.Body.WriteAsync(answer.Body, context.RequestAborted);
    }

    private static async Task WriteStatsAsync(HttpResponse response, SimulatorStats stats, CancellationToken cancellationToken)
    {
        response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(response.Body);
        json.WriteStartObject();
        json.WriteNumber("requests", stats.Requests);
        json.WriteNumber("in_flight", stats.InFlight);
        json.WriteNumber("peak_in_flight", stats.PeakInFlight);
        json.WriteStartObject("by_status");
        foreach (var (status, count) in stats.ByStatus)
        {
            json.WriteNumber(status.ToString(System.Globalization.CultureInfo.InvariantCulture), count);
        }

        json.WriteEndObject();
        json.WriteNumber("resets", stats.Resets);
        json.WriteNumber("hangs", stats.Hangs);
        json.WriteNumber("duplicates", stats.Duplicates);
        json.WriteNumber("batch_jobs", stats.Batch.Jobs);
        json.WriteNumber("batch_lines_succeeded", stats.Batch.LinesSucceeded);
        json.WriteNumber("batch_lines_errored", stats.Batch.LinesErrored);
        json.WriteNumber("batch_lines_expired", stats.Batch.LinesExpired);
        json.WriteNumber("batch_lines_cancelled", stats.Batch.LinesCancelled);
        json.WriteNumber("flex_requests", stats.FlexRequests);
        json.WriteNumber("flex_refusals", stats.FlexRefusals);
        json.WriteNumber("streams_cut", stats.StreamsCut);
        json.WriteEndObject();
        await json.FlushAsync(cancellationToken);
    }
}
