using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Shepherd.Client;

/// <summary>Registers a <see cref="ShepherdClient"/> with dependency injection.</summary>
public static class ShepherdClientServiceCollectionExtensions
{
    /// <summary>The name of the <see cref="HttpClient"/> the registered client sends through.</summary>
    public const string HttpClientName = "Shepherd.Client";

    /// <summary>
    /// Registers one <see cref="ShepherdClient"/> for the application, configured from
    /// <paramref name="configuration"/> (a section such as <c>Shepherd</c> with <c>BaseUrl</c>,
    /// <c>ApiKey</c>, <c>Api</c> and any other <see cref="ShepherdClientOptions"/> by name; a name
    /// it does not know is an error), sending through an <see cref="HttpClient"/> from
    /// <c>IHttpClientFactory</c>.
    /// </summary>
    /// <returns>The builder of that <see cref="HttpClient"/>, to add handlers to.</returns>
    /// <exception cref="InvalidOperationException">When the client is first resolved, if <c>BaseUrl</c> is missing or not an absolute url, or a setting is unknown.</exception>
    public static IHttpClientBuilder AddShepherdClient(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return services.AddShepherdClient(_ => FromConfiguration(configuration));
    }

    /// <summary>
    /// Registers one <see cref="ShepherdClient"/> for the application with the options
    /// <paramref name="options"/> makes, sending through an <see cref="HttpClient"/> from
    /// <c>IHttpClientFactory</c>.
    /// </summary>
    /// <returns>The builder of that <see cref="HttpClient"/>, to add handlers to.</returns>
    public static IHttpClientBuilder AddShepherdClient(this IServiceCollection services, Func<IServiceProvider, ShepherdClientOptions> options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        var http = services.AddHttpClient(HttpClientName)
            // The client keeps its own timeouts per call; a stream of results may run longer than 100 s.
            .ConfigureHttpClient(client => client.Timeout = Timeout.InfiniteTimeSpan)
            // One client lives as long as the application: its connections are renewed instead of its handler.
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
            .SetHandlerLifetime(Timeout.InfiniteTimeSpan);
        services.TryAddSingleton(provider =>
        {
            var made = options(provider);
            made.LoggerFactory ??= provider.GetService<ILoggerFactory>();
            return new ShepherdClient(made, provider.GetRequiredService<IHttpClientFactory>().CreateClient(HttpClientName));
        });
        services.TryAddSingleton<IShepherdClient>(provider => provider.GetRequiredService<ShepherdClient>());
        return http;
    }

    private static ShepherdClientOptions FromConfiguration(IConfiguration configuration)
    {
        var where = configuration is IConfigurationSection section ? section.Path + ":" : "";
        var text = configuration[nameof(ShepherdClientOptions.BaseUrl)];
        if (!Uri.TryCreate(text, UriKind.Absolute, out var baseUrl))
        {
            throw new InvalidOperationException($"{where}BaseUrl must be the absolute url of a Shepherd server (or of the OpenAI or Anthropic API), such as http://127.0.0.1:8080; it is '{text}'.");
        }

        var options = new ShepherdClientOptions { BaseUrl = baseUrl };
        configuration.Bind(options, binder => binder.ErrorOnUnknownConfiguration = true);
        return options;
    }
}
